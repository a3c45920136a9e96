//! Minimal `.npy` (format 1.0) serialiser for little-endian u8/i16/u16/i32/f32/f64 arrays.
//! Writing files is the caller's business (vlsm writes them atomically).

/// Element types that can be stored in `.npy`.
pub trait NpyElem: Copy {
    const DESCR: &'static str;
    fn write_le(self, out: &mut Vec<u8>);
    fn read_le(b: &[u8]) -> Self;
}
macro_rules! npy_elem {
    ($t:ty, $d:expr) => {
        impl NpyElem for $t {
            const DESCR: &'static str = $d;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("element size"))
            }
        }
    };
}
npy_elem!(u8, "|u1");
npy_elem!(i16, "<i2");
npy_elem!(u16, "<u2");
npy_elem!(i32, "<i4");
npy_elem!(f32, "<f4");
npy_elem!(f64, "<f8");

/// Serialises `data` with `shape` (C order) as `.npy` bytes.
pub fn to_npy_bytes<T: NpyElem>(data: &[T], shape: &[usize]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", T::DESCR, shape_s);
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        v.write_le(&mut out);
    }
    out
}
