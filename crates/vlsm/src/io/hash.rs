//! The one content hash of the crate: 64-bit FNV-1a, for cache keys (not cryptographic).

/// FNV-1a's 64-bit offset basis (the initial state).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
pub const FNV_PRIME: u64 = 0x100_0000_01b3;

/// One FNV-1a step: xor `v` into the state `h`, multiply by the prime.
#[inline]
pub fn fnv1a_mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(FNV_PRIME)
}

/// 64-bit FNV-1a over 8-byte words (fast enough for GB-sized weight files), then the length.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(FNV_OFFSET)
    }
}

impl Fnv64 {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut it = bytes.chunks_exact(8);
        for w in &mut it {
            self.0 = fnv1a_mix(self.0, u64::from_le_bytes(w.try_into().unwrap()));
        }
        for &b in it.remainder() {
            self.0 = fnv1a_mix(self.0, b as u64);
        }
        self.0 = fnv1a_mix(self.0, bytes.len() as u64);
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
