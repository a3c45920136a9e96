//! A TensorBoard event-file writer for scalars, hand-encoded so no protoc is needed.
//!
//! File: TFRecords `u64 len | u32 masked_crc(len) | data | u32 masked_crc(data)`, each `data` an
//! `Event` protobuf: wall_time (1, double), step (2, int64), file_version (3, string),
//! summary (5, Summary { value (1): Value { tag (1, string), simple_value (2, float) } }).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// CRC-32C (Castagnoli), bitwise-reflected table form.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// TFRecord's CRC masking.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u32, b: &[u8], out: &mut Vec<u8>) {
    varint(((field << 3) | 2) as u64, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// Event bytes: a scalar summary when `scalar` is given, else the file-version header.
pub fn encode_event(wall_time: f64, step: i64, scalar: Option<(&str, f32)>) -> Vec<u8> {
    let mut ev = vec![0x09]; // field 1, fixed64
    ev.extend_from_slice(&wall_time.to_le_bytes());
    ev.push(0x10); // field 2, varint
    varint(step as u64, &mut ev);
    match scalar {
        None => bytes_field(3, b"brain.Event:2", &mut ev),
        Some((tag, v)) => {
            let mut value = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut value);
            value.push(0x15); // field 2, fixed32
            value.extend_from_slice(&v.to_le_bytes());
            let mut summary = Vec::new();
            bytes_field(1, &value, &mut summary);
            bytes_field(5, &summary, &mut ev);
        }
    }
    ev
}

/// One framed TFRecord.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Appends scalar events to `<dir>/events.out.tfevents.<secs>.<host>`; flushed after each write.
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create directory: {e}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
        let host = if host.is_empty() { "localhost".to_string() } else { host };
        let t = now();
        // The pid keeps two writers started in the same second apart.
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{}", t as u64, std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow!("{}: cannot create: {e}", path.display()))?;
        let mut w = EventWriter { file, path };
        w.write_raw(&encode_event(t, 0, None))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_raw(&mut self, ev: &[u8]) -> Result<()> {
        self.file
            .write_all(&frame(ev))
            .and_then(|_| self.file.flush())
            .map_err(|e| anyhow!("{}: cannot write: {e}", self.path.display()))
    }

    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> Result<()> {
        self.write_raw(&encode_event(now(), step, Some((tag, value))))
    }
}

/// A decoded scalar event: (step, tag, value). Used by tests and tools.
pub fn read_scalars(bytes: &[u8]) -> Result<Vec<(i64, String, f32)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hdr = bytes.get(i..i + 12).ok_or_else(|| anyhow!("truncated record header at {i}"))?;
        let len = u64::from_le_bytes(hdr[..8].try_into().unwrap()) as usize;
        if u32::from_le_bytes(hdr[8..12].try_into().unwrap()) != masked_crc(&hdr[..8]) {
            return Err(anyhow!("bad length CRC at {i}"));
        }
        let data = bytes.get(i + 12..i + 12 + len).ok_or_else(|| anyhow!("truncated record at {i}"))?;
        let crc = bytes.get(i + 12 + len..i + 16 + len).ok_or_else(|| anyhow!("truncated CRC at {i}"))?;
        if u32::from_le_bytes(crc.try_into().unwrap()) != masked_crc(data) {
            return Err(anyhow!("bad data CRC at {i}"));
        }
        decode_event(data, &mut out)?;
        i += 16 + len;
    }
    Ok(out)
}

struct Pb<'a>(&'a [u8], usize);

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for s in (0..64).step_by(7) {
            let b = *self.0.get(self.1).ok_or_else(|| anyhow!("truncated varint"))?;
            self.1 += 1;
            v |= ((b & 0x7f) as u64) << s;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(anyhow!("bad varint"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.0.get(self.1..self.1 + n).ok_or_else(|| anyhow!("truncated field"))?;
        self.1 += n;
        Ok(s)
    }
    /// Next (field, wire type, payload); varints come back as their LE bytes.
    fn next(&mut self) -> Result<Option<(u64, u64, Vec<u8>)>> {
        if self.1 >= self.0.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let payload = match key & 7 {
            0 => self.varint()?.to_le_bytes().to_vec(),
            1 => self.take(8)?.to_vec(),
            2 => {
                let n = self.varint()? as usize;
                self.take(n)?.to_vec()
            }
            5 => self.take(4)?.to_vec(),
            w => return Err(anyhow!("unsupported wire type {w}")),
        };
        Ok(Some((key >> 3, key & 7, payload)))
    }
}

fn decode_event(data: &[u8], out: &mut Vec<(i64, String, f32)>) -> Result<()> {
    let mut ev = Pb(data, 0);
    let mut step = 0i64;
    let mut values = Vec::new();
    while let Some((f, _, p)) = ev.next()? {
        match f {
            2 => step = i64::from_le_bytes(p[..8].try_into().unwrap()),
            5 => {
                let mut s = Pb(&p, 0);
                while let Some((1, _, v)) = s.next()? {
                    let mut vp = Pb(&v, 0);
                    let (mut tag, mut val) = (String::new(), f32::NAN);
                    while let Some((f, _, p)) = vp.next()? {
                        match f {
                            1 => tag = String::from_utf8_lossy(&p).into_owned(),
                            2 => val = f32::from_le_bytes(p[..4].try_into().unwrap()),
                            _ => {}
                        }
                    }
                    values.push((tag, val));
                }
            }
            _ => {}
        }
    }
    out.extend(values.into_iter().map(|(t, v)| (step, t, v)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn writes_and_reads_back_scalars() {
        let dir = std::env::temp_dir().join(format!("vlsm-tb-{}", std::process::id()));
        let mut w = EventWriter::create(&dir).unwrap();
        w.scalar("train/loss", 1, 0.5).unwrap();
        w.scalar("val/dice", 300, 0.25).unwrap();
        w.scalar("lr", 3, 2e-4).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        let got = read_scalars(&bytes).unwrap();
        assert_eq!(got, vec![(1, "train/loss".into(), 0.5), (300, "val/dice".into(), 0.25), (3, "lr".into(), 2e-4)]);
        assert!(w.path().file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 6] ^= 1;
        assert!(read_scalars(&bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
