//! Prompt generation for a new dataset (medvlsm templates). In progress.
