//! Writers and decoders the tests of this crate share (unit and integration): the other side of
//! the server's zip reader and Label Studio RLE writer. Not part of the API.

use std::io::Write;

/// A minimal zip writer: stored or deflated entries, then a central directory.
pub fn zip_of(entries: &[(String, Vec<u8>, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (name, data, deflate) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let body = if *deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("deflate into memory");
            e.finish().expect("deflate into memory")
        } else {
            data.clone()
        };
        let method: u16 = if *deflate { 8 } else { 0 };
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&method.to_le_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&crc.sum().to_le_bytes());
            v.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        };
        let off = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        common(&mut out);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        common(&mut cd);
        cd.extend_from_slice(&[0; 12]);
        cd.extend_from_slice(&off.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// Label Studio's brush RLE decoder (`label_studio_sdk.converter.brush.decode_rle`), in Rust.
pub fn decode_ls_rle(rle: &[u8]) -> Vec<u8> {
    let mut pos = 0usize;
    let mut read = |n: usize| {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | ((rle[pos / 8] >> (7 - pos % 8)) & 1) as u64;
            pos += 1;
        }
        v
    };
    let num = read(32) as usize;
    let ws = read(5) as usize + 1;
    let sizes: Vec<usize> = (0..4).map(|_| read(4) as usize + 1).collect();
    let mut out = vec![0u8; num];
    let mut i = 0;
    while i < num {
        let x = read(1);
        let idx = read(2) as usize;
        let j = i + 1 + read(sizes[idx]) as usize;
        if x == 1 {
            let v = read(ws) as u8;
            out[i..j].fill(v);
            i = j;
        } else {
            while i < j {
                out[i] = read(ws) as u8;
                i += 1;
            }
        }
    }
    out
}
