//! Image-encoder output per upload content hash, least recently used out first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vlsm::pipeline::ImageFeatures;

/// What a cached image keeps: its encoder output and its size.
pub struct Entry {
    pub features: ImageFeatures,
    pub width: u32,
    pub height: u32,
}

/// A small LRU (a few dozen entries, so a linear scan is cheaper than a linked map).
pub struct FeatureCache {
    items: Mutex<VecDeque<([u8; 32], Arc<Entry>)>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Bumped by [`FeatureCache::clear`] (a new model): features computed under an older
    /// generation are neither found nor stored.
    generation: AtomicU64,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
}

impl FeatureCache {
    pub fn new(capacity: usize) -> Self {
        FeatureCache {
            items: Mutex::new(VecDeque::new()),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation; read it before the model a request uses.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every entry and starts a new generation (the model changed).
    pub fn clear(&self) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        items.clear();
    }

    /// [`FeatureCache::get`] for a request that read generation `gen`: nothing once it is old.
    pub fn get_at(&self, gen: u64, key: &[u8; 32]) -> Option<Arc<Entry>> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let found =
            if gen == self.generation.load(Ordering::SeqCst) { items.iter().position(|(k, _)| k == key) } else { None };
        match found {
            Some(i) => {
                let item = items.remove(i).expect("index from position");
                let e = item.1.clone();
                items.push_back(item);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// [`FeatureCache::insert`] unless generation `gen` is over (the features are the old model's).
    pub fn insert_at(&self, gen: u64, key: [u8; 32], entry: Arc<Entry>) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if gen != self.generation.load(Ordering::SeqCst) {
            return;
        }
        items.retain(|(k, _)| *k != key);
        items.push_back((key, entry));
        while items.len() > self.capacity {
            items.pop_front();
        }
    }

    /// Looks `key` up, counting a hit or a miss, and marks it most recently used.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        self.get_at(self.generation(), key)
    }

    /// Whether `key` is cached, without counting or reordering.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(k, _)| k == key)
    }

    pub fn insert(&self, key: [u8; 32], entry: Arc<Entry>) {
        self.insert_at(self.generation(), key, entry)
    }

    pub fn stats(&self) -> CacheStats {
        let entries = self.items.lock().unwrap_or_else(|e| e.into_inner()).len();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            capacity: self.capacity,
        }
    }
}
