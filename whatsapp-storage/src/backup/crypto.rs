//! Encryption at rest: XChaCha20-Poly1305 (crate `chacha20poly1305` 0.10) in the STREAM
//! construction (`aead::stream::StreamBE32`), so archives of any size are encrypted and
//! decrypted chunk by chunk, never whole in memory.
//!
//! # Format
//!
//! ```text
//! header  = magic "WABKENC1" (8) | chunk size, u32 BE (4) | key id (8) | nonce prefix (19)
//! chunk*  = ciphertext of `chunk size` plaintext bytes + 16-byte tag   (not last)
//! last    = ciphertext of 0..chunk size-1 plaintext bytes + 16-byte tag (last flag set)
//! ```
//!
//! The nonce of chunk `i` is `prefix ‖ i (u32 BE) ‖ last flag`; the whole header is the
//! associated data of every chunk, so nothing in it can be altered; truncation, reordering
//! or a dropped final chunk fail authentication. The key id (the first 8 bytes of
//! `sha256("whatsapp-backup-key-id" ‖ key)`) only exists to turn a wrong key into a clear
//! message before any decryption is attempted.

use std::fmt;
use std::io::{self, Read, Write};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, OsRng};
use sha2::{Digest, Sha256};
use whatsapp_core::{Error, Result};

const MAGIC: &[u8; 8] = b"WABKENC1";
const NONCE_PREFIX: usize = 19;
const KEY_ID: usize = 8;
const TAG: usize = 16;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 8 + 4 + KEY_ID + NONCE_PREFIX;
/// Plaintext bytes per chunk written by this code.
pub const CHUNK: usize = 64 * 1024;
const MAX_CHUNK: usize = 16 << 20;

/// A 256-bit backup encryption key, from configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    /// Parses a key given as 64 hex digits or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes. Generate one with `openssl rand -base64 32`.
    pub fn parse(s: &str) -> Result<Self> {
        use base64::Engine;
        let s = s.trim();
        let rule = "must be 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -base64 32`)";
        let bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| Error::invalid("backup encryption key", rule))?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(s).ok())
                .ok_or_else(|| Error::invalid("backup encryption key", rule))?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid("backup encryption key", rule))?;
        Ok(EncryptionKey(key))
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        EncryptionKey(bytes)
    }

    /// A fresh random key (for tests and for operators generating one).
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        EncryptionKey(k)
    }

    /// The public key id written into encrypted archives, as 16 hex digits.
    pub fn id(&self) -> String {
        hex::encode(self.id_bytes())
    }

    fn id_bytes(&self) -> [u8; KEY_ID] {
        let mut h = Sha256::new();
        h.update(b"whatsapp-backup-key-id");
        h.update(self.0);
        let d = h.finalize();
        let mut id = [0u8; KEY_ID];
        id.copy_from_slice(&d[..KEY_ID]);
        id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(GenericArray::from_slice(&self.0))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey(*** id {})", self.id())
    }
}

/// Whether `prefix` (the first bytes of a stored object) starts like an encrypted archive.
pub fn looks_encrypted(prefix: &[u8]) -> bool {
    prefix.starts_with(MAGIC)
}

fn corrupt_io(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Error::Corrupt(msg.into()))
}

/// Encrypts everything written to it into `inner`. Call [`EncryptWriter::finish`] at the
/// end: without the final chunk the output does not decrypt.
pub struct EncryptWriter<W: Write> {
    inner: W,
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER_LEN],
    buf: Vec<u8>,
}

impl<W: Write> fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptWriter")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> EncryptWriter<W> {
    /// Writes the header and returns the writer.
    pub fn new(mut inner: W, key: &EncryptionKey) -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX];
        OsRng.fill_bytes(&mut prefix);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(CHUNK as u32).to_be_bytes());
        header[12..12 + KEY_ID].copy_from_slice(&key.id_bytes());
        header[12 + KEY_ID..].copy_from_slice(&prefix);
        inner.write_all(&header)?;
        let enc = EncryptorBE32::from_aead(key.cipher(), GenericArray::from_slice(&prefix));
        Ok(EncryptWriter {
            inner,
            enc: Some(enc),
            header,
            buf: Vec::with_capacity(CHUNK + TAG),
        })
    }

    fn seal_full_chunk(&mut self) -> io::Result<()> {
        let enc = self
            .enc
            .as_mut()
            .ok_or_else(|| io::Error::other("EncryptWriter used after finish"))?;
        enc.encrypt_next_in_place(&self.header, &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed (stream too long)"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Encrypts the final chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let enc = self
            .enc
            .take()
            .ok_or_else(|| io::Error::other("EncryptWriter finished twice"))?;
        enc.encrypt_last_in_place(&self.header, &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            // Sealed eagerly as "not last": the last chunk is always shorter than CHUNK,
            // which is how the reader recognises it.
            self.seal_full_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an [`EncryptWriter`] stream read from `inner`.
pub struct DecryptReader<R: Read> {
    inner: R,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER_LEN],
    chunk: usize,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptReader")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

const WRONG: &str = "backup decryption failed: wrong key or damaged backup";

impl<R: Read> DecryptReader<R> {
    /// Reads and checks the header. A different key id is an [`Error::Corrupt`] saying
    /// the key is wrong.
    pub fn new(mut inner: R, key: &EncryptionKey) -> Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        read_full(&mut inner, &mut header)
            .map_err(|e| super::archive::from_io(e, "reading the encryption header"))
            .and_then(|n| {
                if n < HEADER_LEN {
                    Err(Error::Corrupt(
                        "backup is too short to be an encrypted archive".into(),
                    ))
                } else {
                    Ok(())
                }
            })?;
        if &header[..8] != MAGIC {
            return Err(Error::Corrupt(
                "backup is not an encrypted archive (bad magic)".into(),
            ));
        }
        let chunk = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if chunk == 0 || chunk > MAX_CHUNK {
            return Err(Error::Corrupt(format!(
                "encrypted archive declares a chunk of {chunk} bytes"
            )));
        }
        let id = &header[12..12 + KEY_ID];
        if id != key.id_bytes() {
            return Err(Error::Corrupt(format!(
                "{WRONG}: the backup was encrypted with key id {}, the configured key has id {}",
                hex::encode(id),
                key.id()
            )));
        }
        let dec = DecryptorBE32::from_aead(
            key.cipher(),
            GenericArray::from_slice(&header[12 + KEY_ID..]),
        );
        Ok(DecryptReader {
            inner,
            dec: Some(dec),
            header,
            chunk,
            buf: Vec::with_capacity(chunk + TAG),
            pos: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        self.buf.resize(self.chunk + TAG, 0);
        self.pos = 0;
        let n = read_full(&mut self.inner, &mut self.buf)?;
        self.buf.truncate(n);
        if n < TAG {
            return Err(corrupt_io(format!("{WRONG}: the archive is truncated")));
        }
        if n == self.chunk + TAG {
            let dec = self.dec.as_mut().ok_or_else(|| corrupt_io(WRONG))?;
            dec.decrypt_next_in_place(&self.header, &mut self.buf)
                .map_err(|_| corrupt_io(WRONG))?;
        } else {
            let dec = self.dec.take().ok_or_else(|| corrupt_io(WRONG))?;
            dec.decrypt_last_in_place(&self.header, &mut self.buf)
                .map_err(|_| corrupt_io(WRONG))?;
            self.done = true;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize) {
        let key = EncryptionKey::generate();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = EncryptWriter::new(Vec::new(), &key).unwrap();
        w.write_all(&data).unwrap();
        let ct = w.finish().unwrap();
        let mut out = Vec::new();
        DecryptReader::new(ct.as_slice(), &key)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data, "len {len}");
    }

    #[test]
    fn roundtrips_at_chunk_boundaries() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            roundtrip(len);
        }
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_detected() {
        let key = EncryptionKey::generate();
        let mut w = EncryptWriter::new(Vec::new(), &key).unwrap();
        w.write_all(&vec![1u8; 2 * CHUNK + 5]).unwrap();
        let ct = w.finish().unwrap();
        let cut = &ct[..HEADER_LEN + CHUNK + TAG];
        let mut out = Vec::new();
        let e = DecryptReader::new(cut, &key)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_debug_hides_them() {
        let hexkey = "00".repeat(31) + "01";
        let k = EncryptionKey::parse(&hexkey).unwrap();
        let mut raw = [0u8; 32];
        raw[31] = 1;
        assert_eq!(k, EncryptionKey::from_bytes(raw));
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(EncryptionKey::parse(&b64).unwrap(), k);
        assert!(EncryptionKey::parse("short").is_err());
        assert!(!format!("{k:?}").contains(&hexkey));
    }
}
