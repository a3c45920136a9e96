//! Datasets in the medvlsm layout: `<root>/images/`, `<root>/masks/`,
//! `<root>/anns/{train,val,test}.json` (records with img_name, mask_name, bbox, prompts p0..pN).

mod dataset;
pub mod names;
pub mod prompts;

pub use dataset::{prompt, Dataset, Pool, PoolItem, Prompt, Record, IMAGE_EXTENSIONS};
pub use names::{check_inside, resolve_inside, safe_relative};
