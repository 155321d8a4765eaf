//! A read-only consistency check of a LevelDB directory, without opening the database.
//!
//! Chromium keeps IndexedDB, Local Storage and Session Storage in LevelDB. A LevelDB is
//! consistent when `CURRENT` names a `MANIFEST-<n>` file, that manifest (a log of
//! "version edits") parses, and every table file the final version lists exists with the
//! size the manifest recorded. This is what a copy of a database that was being compacted
//! gets wrong, and what a damaged profile usually lacks, so it serves both the snapshot
//! check and the critical-files check.
//!
//! The formats are LevelDB's `doc/log_format.md` (32 KiB blocks of records with a masked
//! CRC-32C, a length and a type) and `db/version_edit.cc` (tagged varint fields).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

const BLOCK: usize = 32 * 1024;
const HEADER: usize = 7;
/// Manifests are small (KiB); refuse absurd ones rather than read them into memory.
const MAX_MANIFEST: u64 = 64 * 1024 * 1024;

/// Checks the LevelDB in `dir`. `Err` says what is wrong, for the operator.
pub fn check_db(dir: &Path) -> Result<(), String> {
    let current = fs::read(dir.join("CURRENT")).map_err(|e| format!("CURRENT: {e}"))?;
    let current = String::from_utf8(current).map_err(|_| "CURRENT is not text".to_string())?;
    let name = current
        .strip_suffix('\n')
        .ok_or_else(|| "CURRENT is truncated".to_string())?;
    if !name.starts_with("MANIFEST-") || name.contains(['/', '\\']) {
        return Err(format!("CURRENT names {name:?}, not a manifest"));
    }
    let manifest_path = dir.join(name);
    let meta = fs::metadata(&manifest_path).map_err(|e| format!("{name}: {e}"))?;
    if meta.len() > MAX_MANIFEST {
        return Err(format!(
            "{name} is implausibly large ({} bytes)",
            meta.len()
        ));
    }
    let bytes = fs::read(&manifest_path).map_err(|e| format!("{name}: {e}"))?;
    let state = manifest_state(&bytes).map_err(|e| format!("{name}: {e}"))?;
    for (number, size) in &state.tables {
        let ldb = dir.join(format!("{number:06}.ldb"));
        let sst = dir.join(format!("{number:06}.sst"));
        let actual = fs::metadata(&ldb)
            .or_else(|_| fs::metadata(&sst))
            .map_err(|_| format!("table {number:06}.ldb listed in {name} is missing"))?
            .len();
        if actual != *size {
            return Err(format!(
                "table {number:06}.ldb is {actual} bytes, {name} says {size}"
            ));
        }
    }
    Ok(())
}

/// Splits a LevelDB log into its logical records, checking every checksum. A torn record at
/// the very end (a writer that died mid-write) ends the log, as LevelDB itself does.
fn read_log(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    let mut out = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    let mut pos = 0;
    let mut complete_end = 0;
    while pos < bytes.len() {
        let left_in_block = BLOCK - pos % BLOCK;
        if left_in_block < HEADER {
            pos += left_in_block; // block trailer, zero-filled
            continue;
        }
        if pos + HEADER > bytes.len() {
            break; // torn header at the end
        }
        let h = &bytes[pos..pos + HEADER];
        let masked = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u16::from_le_bytes([h[4], h[5]]) as usize;
        let kind = h[6];
        if kind == 0 && len == 0 {
            // Zero-filled pre-allocated space.
            pos += left_in_block;
            continue;
        }
        if HEADER + len > left_in_block {
            return Err("a record crosses a block boundary".into());
        }
        if pos + HEADER + len > bytes.len() {
            break; // torn payload at the end
        }
        let payload = &bytes[pos + HEADER..pos + HEADER + len];
        let mut crc = crc32c_update(0, &[kind]);
        crc = crc32c_update(crc, payload);
        if unmask(masked) != crc {
            return Err(format!("checksum mismatch at byte {pos}"));
        }
        pos += HEADER + len;
        match kind {
            1 => {
                out.push(payload.to_vec());
                complete_end = pos;
            }
            2 => partial = Some(payload.to_vec()),
            3 => partial
                .as_mut()
                .ok_or("a middle fragment without a first one")?
                .extend_from_slice(payload),
            4 => {
                let mut rec = partial
                    .take()
                    .ok_or("a last fragment without a first one")?;
                rec.extend_from_slice(payload);
                out.push(rec);
                complete_end = pos;
            }
            other => return Err(format!("unknown record type {other}")),
        }
    }
    Ok((out, complete_end))
}

/// The state a manifest describes: live tables and the oldest log still needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestState {
    /// (file number, size) of every live table.
    pub tables: Vec<(u64, u64)>,
    /// Logs numbered at least this hold data not yet in a table.
    pub min_log: u64,
    /// Length of the manifest up to its last complete record (a torn tail is dropped).
    pub complete_len: usize,
}

/// Parses a manifest (possibly with a torn tail, as copied from a running database).
pub(crate) fn manifest_state(bytes: &[u8]) -> Result<ManifestState, String> {
    let (records, complete_len) = read_log(bytes)?;
    if records.is_empty() {
        return Err("the manifest holds no version".into());
    }
    let mut live: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut logs = LogNumbers::default();
    for rec in &records {
        apply_edit(rec, &mut live, &mut logs)?;
    }
    let min_log = match logs.prev {
        Some(p) if p != 0 => p.min(logs.log),
        _ => logs.log,
    };
    Ok(ManifestState {
        tables: live.iter().map(|((_, n), s)| (*n, *s)).collect(),
        min_log,
        complete_len,
    })
}

#[derive(Default)]
struct LogNumbers {
    log: u64,
    prev: Option<u64>,
}

fn apply_edit(
    rec: &[u8],
    live: &mut BTreeMap<(u32, u64), u64>,
    logs: &mut LogNumbers,
) -> Result<(), String> {
    let mut r = rec;
    while !r.is_empty() {
        let tag = varint(&mut r)?;
        match tag {
            1 => {
                slice(&mut r)?; // comparator name
            }
            2 => logs.log = varint(&mut r)?,
            9 => logs.prev = Some(varint(&mut r)?),
            3 | 4 => {
                varint(&mut r)?; // next file number, last sequence
            }
            5 => {
                varint(&mut r)?; // level
                slice(&mut r)?; // compact pointer key
            }
            6 => {
                let level = level(&mut r)?;
                let number = varint(&mut r)?;
                live.remove(&(level, number));
            }
            7 => {
                let level = level(&mut r)?;
                let number = varint(&mut r)?;
                let size = varint(&mut r)?;
                slice(&mut r)?; // smallest key
                slice(&mut r)?; // largest key
                live.insert((level, number), size);
            }
            other => return Err(format!("unknown version-edit tag {other}")),
        }
    }
    Ok(())
}

fn level(r: &mut &[u8]) -> Result<u32, String> {
    let l = varint(r)?;
    if l >= 7 {
        return Err(format!("level {l} out of range"));
    }
    Ok(l as u32)
}

fn varint(r: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = r.split_first().ok_or("truncated varint")?;
        *r = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn slice<'a>(r: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let n = varint(r)? as usize;
    if n > r.len() {
        return Err("truncated field".into());
    }
    let (s, rest) = r.split_at(n);
    *r = rest;
    Ok(s)
}

fn unmask(masked: u32) -> u32 {
    let rot = masked.wrapping_sub(0xa282_ead8);
    rot.rotate_left(15)
}

/// CRC-32C (Castagnoli), bitwise table built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn crc32c_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Test support: writes a minimal, valid LevelDB (CURRENT, a manifest listing `tables`, the
/// table files and a log) so tests and benchmarks can build fake profiles that pass
/// [`check_db`]. `tables` are (file number, contents).
#[doc(hidden)]
pub fn write_fake_db(dir: &Path, tables: &[(u64, Vec<u8>)], log: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut edit = Vec::new();
    put_varint(&mut edit, 1);
    put_slice(&mut edit, b"leveldb.BytewiseComparator");
    let max = tables.iter().map(|t| t.0).max().unwrap_or(1);
    put_varint(&mut edit, 2);
    put_varint(&mut edit, max + 1);
    put_varint(&mut edit, 3);
    put_varint(&mut edit, max + 3);
    for (n, data) in tables {
        fs::write(dir.join(format!("{n:06}.ldb")), data)?;
        put_varint(&mut edit, 7);
        put_varint(&mut edit, 0);
        put_varint(&mut edit, *n);
        put_varint(&mut edit, data.len() as u64);
        put_slice(&mut edit, b"a");
        put_slice(&mut edit, b"z");
    }
    let manifest_no = max + 2;
    let mut manifest = Vec::new();
    let mut crc = crc32c_update(0, &[1]);
    crc = crc32c_update(crc, &edit);
    let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
    manifest.extend_from_slice(&masked.to_le_bytes());
    manifest.extend_from_slice(&(edit.len() as u16).to_le_bytes());
    manifest.push(1);
    manifest.extend_from_slice(&edit);
    fs::write(dir.join(format!("MANIFEST-{manifest_no:06}")), manifest)?;
    fs::write(dir.join("CURRENT"), format!("MANIFEST-{manifest_no:06}\n"))?;
    fs::write(dir.join(format!("{:06}.log", max + 1)), log)?;
    fs::write(dir.join("LOCK"), b"")?;
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 test vector: 32 bytes of zeros.
        assert_eq!(crc32c_update(0, &[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c_update(0, b"123456789"), 0xe306_9283);
    }

    #[test]
    fn fake_db_passes_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_fake_db(dir.path(), &[(5, vec![1; 100]), (7, vec![2; 50])], b"x").unwrap();
        check_db(dir.path()).unwrap();

        fs::write(dir.path().join("000007.ldb"), [2; 10]).unwrap();
        let e = check_db(dir.path()).unwrap_err();
        assert!(e.contains("000007.ldb is 10 bytes"), "{e}");

        fs::remove_file(dir.path().join("000007.ldb")).unwrap();
        let e = check_db(dir.path()).unwrap_err();
        assert!(e.contains("missing"), "{e}");

        fs::remove_file(dir.path().join("CURRENT")).unwrap();
        assert!(check_db(dir.path()).unwrap_err().contains("CURRENT"));
    }

    #[test]
    fn flipped_byte_in_manifest_is_a_checksum_error() {
        let dir = tempfile::tempdir().unwrap();
        write_fake_db(dir.path(), &[(5, vec![1; 100])], b"").unwrap();
        let m = dir.path().join("MANIFEST-000007");
        let mut b = fs::read(&m).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        fs::write(&m, b).unwrap();
        assert!(check_db(dir.path()).unwrap_err().contains("checksum"));
    }
}
