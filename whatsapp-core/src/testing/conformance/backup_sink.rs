//! The [`BackupSink`] conformance suite: one case per promise of its `# Contract`.
//!
//! Run everything with [`run_all`]; each case is also public. Keys look like
//! `conformance/<case>-<unique token>/…`; each case deletes its keys when it passes (if the
//! sink can delete). A sink that declares no `list` or no `delete` capability is checked to
//! fail those calls with [`Error::Unavailable`] instead.
//!
//! Notes for backends: `list` orders keys by bytes (`a-x` < `a/1` < `a_y` < `ab`), the
//! prefix is a plain string prefix (not only whole segments), and `get`/`head` of a missing
//! key fail at the call, not later in the stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, future::join};

use super::{Runner, unique_token};
use crate::backup::{BackupKey, BackupSink, ByteStream, ObjectMeta};
use crate::error::{Error, Result};

/// Size of [`large_object_streams`]'s object: 20 MiB.
pub const LARGE_OBJECT_SIZE: usize = 20 * 1024 * 1024;

/// Chunk size [`large_object_streams`] writes with: 64 KiB.
pub const LARGE_OBJECT_CHUNK: usize = 64 * 1024;

/// Runs every case against `sink`, then panics naming each case that failed.
pub async fn run_all(sink: &dyn BackupSink) {
    let mut r = Runner::new("backup_sink");
    r.case("put_get_round_trip", put_get_round_trip(sink)).await;
    r.case("put_overwrites", put_overwrites(sink)).await;
    r.case(
        "failed_put_leaves_previous",
        failed_put_leaves_previous(sink),
    )
    .await;
    r.case(
        "readers_never_see_a_partial_put",
        readers_never_see_a_partial_put(sink),
    )
    .await;
    r.case("get_missing_is_not_found", get_missing_is_not_found(sink))
        .await;
    r.case("head_reports_size", head_reports_size(sink)).await;
    r.case("list_prefix_ordered", list_prefix_ordered(sink))
        .await;
    r.case("delete_idempotent", delete_idempotent(sink)).await;
    r.case("large_object_streams", large_object_streams(sink))
        .await;
    r.case("capabilities_are_honest", capabilities_are_honest(sink))
        .await;
    r.finish();
}

/// Keys unique to one case and run.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(case: &str) -> Self {
        Keys {
            prefix: format!("conformance/{case}-{}/", unique_token()),
        }
    }

    fn key(&self, rest: &str) -> BackupKey {
        BackupKey::new(format!("{}{rest}", self.prefix)).expect("valid backup key")
    }

    fn ours(&self, listed: &[ObjectMeta]) -> Vec<(String, u64)> {
        listed
            .iter()
            .filter(|m| m.key.as_str().starts_with(&self.prefix))
            .map(|m| (m.key.as_str()[self.prefix.len()..].to_owned(), m.size))
            .collect()
    }
}

/// A body of the given chunks.
fn body(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

/// A body that yields `chunks` and then an error.
fn failing_body(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok(Bytes::from(c)))
            .chain(std::iter::once(Err(Error::unavailable(
                "test body",
                "injected error in the middle of the body",
            )))),
    )
    .boxed()
}

/// Deterministic, non-repeating test bytes: `len` bytes starting at `offset` of an endless
/// pattern (splitmix64 of each 8-byte word's index).
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut word = offset / 8;
    let skip = offset % 8;
    while out.len() < len + skip {
        let mut z = (word as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
        word += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

async fn read_all(stream: ByteStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// `get` and read the whole body, panicking with context on error.
async fn get_bytes(sink: &dyn BackupSink, key: &BackupKey) -> Vec<u8> {
    let stream = match sink.get(key).await {
        Ok(s) => s,
        Err(e) => panic!("get({key}) failed: {e}"),
    };
    read_all(stream)
        .await
        .unwrap_or_else(|e| panic!("reading the body of {key} failed: {e}"))
}

async fn put_bytes(sink: &dyn BackupSink, key: &BackupKey, chunks: Vec<Vec<u8>>) -> ObjectMeta {
    sink.put(key, body(chunks))
        .await
        .unwrap_or_else(|e| panic!("put({key}) failed: {e}"))
}

async fn head(sink: &dyn BackupSink, key: &BackupKey) -> ObjectMeta {
    sink.head(key)
        .await
        .unwrap_or_else(|e| panic!("head({key}) failed: {e}"))
}

async fn assert_missing(sink: &dyn BackupSink, key: &BackupKey, context: &str) {
    match sink.get(key).await {
        Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("{context}: get({key}) expected NotFound, got {e:?}"),
        Ok(_) => panic!("{context}: get({key}) expected NotFound, got a body"),
    }
    match sink.head(key).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{context}: head({key}) expected NotFound, got {other:?}"),
    }
}

async fn cleanup(sink: &dyn BackupSink, keys: &[BackupKey]) {
    if sink.capabilities().delete {
        for key in keys {
            let _ = sink.delete(key).await;
        }
    }
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T>) {
    match r {
        Err(Error::Unavailable { .. }) => {}
        other => panic!(
            "{what}: the sink declares it unsupported, so it must fail with Unavailable; got {other:?}"
        ),
    }
}

/// A future that is pending once: lets the other half of a `join` run.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn yield_a_few() {
    for _ in 0..8 {
        YieldOnce(false).await;
    }
}

fn plausible_time(t: DateTime<Utc>, what: &str) {
    let floor: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().expect("valid timestamp");
    assert!(
        t > floor,
        "{what}: last_modified {t} is not a plausible time"
    );
}

/// **Atomic put**, round trip: `get` returns exactly the bytes written (several chunks, an
/// empty chunk, every byte value, an empty object); `put` returns the key and size.
pub async fn put_get_round_trip(sink: &dyn BackupSink) {
    let k = Keys::new("roundtrip");
    let key = k.key("alice/2026-03-28T02-00-00Z.tar.zst");
    let chunks = vec![
        (0..=255).collect::<Vec<u8>>(),
        vec![],
        pattern(0, 1000),
        b"\r\n\0end".to_vec(),
    ];
    let all: Vec<u8> = chunks.concat();
    let meta = put_bytes(sink, &key, chunks).await;
    assert_eq!(meta.key, key, "put returns the key");
    assert_eq!(meta.size, all.len() as u64, "put returns the size written");
    plausible_time(meta.last_modified, "put");
    assert_eq!(
        get_bytes(sink, &key).await,
        all,
        "get returns the bytes written"
    );

    let empty = k.key("empty");
    let meta = put_bytes(sink, &empty, vec![]).await;
    assert_eq!(meta.size, 0, "an empty body makes an empty object");
    assert_eq!(get_bytes(sink, &empty).await, Vec::<u8>::new());
    assert_eq!(head(sink, &empty).await.size, 0);

    let deep = k.key("Deep.Dir_1/x-Y.z/manifest.json");
    put_bytes(sink, &deep, vec![b"{}".to_vec()]).await;
    assert_eq!(
        get_bytes(sink, &deep).await,
        b"{}".to_vec(),
        "nested keys work"
    );
    cleanup(sink, &[key, empty, deep]).await;
}

/// **Overwrite**: `put` on an existing key replaces it (content and size).
pub async fn put_overwrites(sink: &dyn BackupSink) {
    let k = Keys::new("overwrite");
    let key = k.key("obj");
    put_bytes(sink, &key, vec![pattern(0, 5000)]).await;
    let first = head(sink, &key).await;
    let meta = put_bytes(sink, &key, vec![b"short".to_vec()]).await;
    assert_eq!(meta.size, 5);
    assert_eq!(
        get_bytes(sink, &key).await,
        b"short".to_vec(),
        "the second put wins"
    );
    let second = head(sink, &key).await;
    assert_eq!(second.size, 5, "head reports the new size");
    assert!(
        second.last_modified >= first.last_modified - chrono::Duration::seconds(2),
        "last_modified went back on overwrite: {} then {}",
        first.last_modified,
        second.last_modified
    );
    if sink.capabilities().list {
        let listed = sink.list(&k.prefix).await.expect("list");
        assert_eq!(
            k.ours(&listed),
            vec![("obj".to_owned(), 5)],
            "one object, new size"
        );
    }
    cleanup(sink, &[key]).await;
}

/// **Atomic put**: a put whose body fails midway returns an error and leaves the previous
/// object (or none) in place.
pub async fn failed_put_leaves_previous(sink: &dyn BackupSink) {
    let k = Keys::new("failedput");
    let key = k.key("obj");
    let v1 = pattern(0, 3000);
    put_bytes(sink, &key, vec![v1.clone()]).await;

    let r = sink
        .put(&key, failing_body(vec![pattern(7, 70_000), pattern(9, 10)]))
        .await;
    assert!(r.is_err(), "a put whose body fails must fail, got {r:?}");
    assert_eq!(
        get_bytes(sink, &key).await,
        v1,
        "after a failed put the previous object must be intact"
    );
    assert_eq!(head(sink, &key).await.size, v1.len() as u64);

    let r = sink.put(&key, failing_body(vec![])).await;
    assert!(
        r.is_err(),
        "a put whose body fails at once must fail, got {r:?}"
    );
    assert_eq!(get_bytes(sink, &key).await, v1);

    let fresh = k.key("fresh");
    let r = sink
        .put(&fresh, failing_body(vec![pattern(0, 100_000)]))
        .await;
    assert!(r.is_err(), "a put whose body fails must fail, got {r:?}");
    assert_missing(sink, &fresh, "after a failed put of a new key").await;
    if sink.capabilities().list {
        let listed = sink.list(&k.prefix).await.expect("list");
        assert_eq!(
            k.ours(&listed),
            vec![("obj".to_owned(), v1.len() as u64)],
            "a failed put must not leave a listed object"
        );
    }
    cleanup(sink, &[key, fresh]).await;
}

/// **Atomic put**: while a put runs (its body not finished), readers see the previous object
/// or none — never a partial one.
pub async fn readers_never_see_a_partial_put(sink: &dyn BackupSink) {
    let k = Keys::new("partial");
    let key = k.key("obj");
    let v1 = pattern(100, 2000);
    put_bytes(sink, &key, vec![v1.clone()]).await;
    let v2a = pattern(0, 70_000);
    let v2b = pattern(70_000, 1234);

    for (target, previous) in [(key.clone(), Some(v1.clone())), (k.key("new"), None)] {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes>>();
        let put = sink.put(&target, rx.boxed());
        let reader = async {
            tx.unbounded_send(Ok(Bytes::from(v2a.clone())))
                .expect("the put holds the body");
            yield_a_few().await;
            // The body has not ended, so the put cannot have completed.
            match &previous {
                Some(v1) => {
                    assert_eq!(
                        &get_bytes(sink, &target).await,
                        v1,
                        "during a put, readers must see the previous object"
                    );
                    assert_eq!(head(sink, &target).await.size, v1.len() as u64);
                }
                None => assert_missing(sink, &target, "during the first put of a key").await,
            }
            tx.unbounded_send(Ok(Bytes::from(v2b.clone())))
                .expect("the put holds the body");
            drop(tx);
        };
        let (r, ()) = join(put, reader).await;
        let meta = r.unwrap_or_else(|e| panic!("put({target}) failed: {e}"));
        assert_eq!(meta.size, (v2a.len() + v2b.len()) as u64);
        assert_eq!(
            get_bytes(sink, &target).await,
            [v2a.clone(), v2b.clone()].concat(),
            "after the put returned, readers see the new object"
        );
    }
    cleanup(sink, &[key, k.key("new")]).await;
}

/// **Missing keys**: `get` and `head` of a missing key fail with `NotFound`.
pub async fn get_missing_is_not_found(sink: &dyn BackupSink) {
    let k = Keys::new("missing");
    assert_missing(sink, &k.key("never-written"), "a key never written").await;
    assert_missing(sink, &k.key("a/b/c.tar.zst"), "a nested key never written").await;
}

/// `head` reports the key and the size written (also after `put`'s own meta), with a
/// plausible `last_modified`.
pub async fn head_reports_size(sink: &dyn BackupSink) {
    let k = Keys::new("head");
    let mut keys = Vec::new();
    for size in [0usize, 1, 12_345, 65_537] {
        let key = k.key(&format!("size-{size}"));
        let meta = put_bytes(sink, &key, vec![pattern(size, size)]).await;
        let h = head(sink, &key).await;
        assert_eq!(h.key, key, "head returns the key");
        assert_eq!(h.size, size as u64, "head reports the size written");
        assert_eq!(meta.size, h.size, "put and head agree on the size");
        plausible_time(h.last_modified, "head");
        keys.push(key);
    }
    cleanup(sink, &keys).await;
}

/// **List** returns every object whose key starts with the prefix (a plain string prefix),
/// ordered by key in byte order, with the sizes written. A sink without `list` fails with
/// `Unavailable`.
pub async fn list_prefix_ordered(sink: &dyn BackupSink) {
    let k = Keys::new("list");
    // In byte order: A < a-x < a/1 < a/2 < a_y < ab < b.
    let rel = ["b", "a/2", "ab", "a-x", "A", "a/1", "a_y"];
    let mut keys = Vec::new();
    for (i, r) in rel.iter().enumerate() {
        let key = k.key(r);
        put_bytes(sink, &key, vec![pattern(i, 10 * (i + 1))]).await;
        keys.push(key);
    }
    if !sink.capabilities().list {
        assert_unavailable("list", sink.list(&k.prefix).await);
        cleanup(sink, &keys).await;
        return;
    }
    let size_of = |r: &str| 10 * (rel.iter().position(|x| *x == r).expect("known key") as u64 + 1);
    let expect = |rs: &[&str]| {
        rs.iter()
            .map(|r| ((*r).to_owned(), size_of(r)))
            .collect::<Vec<_>>()
    };
    let list = |prefix: String| async move {
        sink.list(&prefix)
            .await
            .unwrap_or_else(|e| panic!("list({prefix:?}) failed: {e}"))
    };

    let all_ours = list(k.prefix.clone()).await;
    assert_eq!(
        k.ours(&all_ours),
        expect(&["A", "a-x", "a/1", "a/2", "a_y", "ab", "b"]),
        "list(prefix) returns every object under it, ordered by key in byte order, with sizes"
    );
    assert_eq!(
        all_ours.len(),
        rel.len(),
        "list(prefix) returned keys outside the prefix"
    );
    assert_eq!(
        k.ours(&list(format!("{}a/", k.prefix)).await),
        expect(&["a/1", "a/2"]),
        "list of a 'directory' prefix"
    );
    assert_eq!(
        k.ours(&list(format!("{}a", k.prefix)).await),
        expect(&["a-x", "a/1", "a/2", "a_y", "ab"]),
        "the prefix is a string prefix, not only whole segments"
    );
    assert_eq!(
        list(format!("{}zzz", k.prefix)).await,
        vec![],
        "a prefix matching nothing lists nothing"
    );
    let everything = list(String::new()).await;
    assert_eq!(
        k.ours(&everything),
        expect(&["A", "a-x", "a/1", "a/2", "a_y", "ab", "b"]),
        "list(\"\") lists everything, ours included, in order"
    );
    assert!(
        everything.windows(2).all(|w| w[0].key < w[1].key),
        "list(\"\") must be strictly ordered by key (byte order)"
    );
    cleanup(sink, &keys).await;
}

/// **Delete** is idempotent: the object is gone after it, and deleting a missing key is
/// `Ok`. A sink without `delete` fails with `Unavailable`.
pub async fn delete_idempotent(sink: &dyn BackupSink) {
    let k = Keys::new("delete");
    let key = k.key("obj");
    let keep = k.key("obj2");
    put_bytes(sink, &key, vec![b"bye".to_vec()]).await;
    put_bytes(sink, &keep, vec![b"stay".to_vec()]).await;
    if !sink.capabilities().delete {
        assert_unavailable("delete", sink.delete(&key).await);
        return;
    }
    sink.delete(&key).await.expect("delete of an existing key");
    assert_missing(sink, &key, "after delete").await;
    sink.delete(&key)
        .await
        .expect("a second delete of the same key is Ok");
    sink.delete(&k.key("never-written"))
        .await
        .expect("delete of a key never written is Ok");
    assert_eq!(
        get_bytes(sink, &keep).await,
        b"stay".to_vec(),
        "delete removes only its key"
    );
    if sink.capabilities().list {
        let listed = sink.list(&k.prefix).await.expect("list");
        assert_eq!(k.ours(&listed), vec![("obj2".to_owned(), 4)]);
    }
    put_bytes(sink, &key, vec![b"again".to_vec()]).await;
    assert_eq!(
        get_bytes(sink, &key).await,
        b"again".to_vec(),
        "a deleted key can be written again"
    );
    cleanup(sink, &[key, keep]).await;
}

/// Bodies are streamed: a [`LARGE_OBJECT_SIZE`] object written in [`LARGE_OBJECT_CHUNK`]
/// chunks (generated lazily) reads back byte for byte, checked chunk by chunk.
pub async fn large_object_streams(sink: &dyn BackupSink) {
    let k = Keys::new("large");
    let key = k.key("big.tar.zst");
    let chunks = LARGE_OBJECT_SIZE / LARGE_OBJECT_CHUNK;
    let source = futures::stream::iter(0..chunks)
        .map(|i| {
            Ok(Bytes::from(pattern(
                i * LARGE_OBJECT_CHUNK,
                LARGE_OBJECT_CHUNK,
            )))
        })
        .boxed();
    let meta = sink
        .put(&key, source)
        .await
        .unwrap_or_else(|e| panic!("put of a {LARGE_OBJECT_SIZE}-byte object failed: {e}"));
    assert_eq!(meta.size, LARGE_OBJECT_SIZE as u64, "put reports the size");
    assert_eq!(
        head(sink, &key).await.size,
        LARGE_OBJECT_SIZE as u64,
        "head reports the size"
    );

    let mut stream = match sink.get(&key).await {
        Ok(s) => s,
        Err(e) => panic!("get of the large object failed: {e}"),
    };
    let mut offset = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading at offset {offset} failed: {e}"));
        assert!(
            offset + chunk.len() <= LARGE_OBJECT_SIZE,
            "the body is longer than what was written"
        );
        assert!(
            chunk[..] == pattern(offset, chunk.len())[..],
            "bytes differ in the {}-byte chunk at offset {offset}",
            chunk.len()
        );
        offset += chunk.len();
    }
    assert_eq!(
        offset, LARGE_OBJECT_SIZE,
        "the body is shorter than what was written"
    );
    cleanup(sink, &[key]).await;
}

/// **Capabilities**: what the sink declares works, and what it declares unsupported fails
/// with `Unavailable` (and changes nothing).
pub async fn capabilities_are_honest(sink: &dyn BackupSink) {
    assert!(!sink.name().is_empty(), "the sink has a name");
    let caps = sink.capabilities();
    let k = Keys::new("caps");
    let key = k.key("probe");
    put_bytes(sink, &key, vec![b"probe".to_vec()]).await;
    let listed = sink.list(&k.prefix).await;
    if caps.list {
        let listed =
            listed.unwrap_or_else(|e| panic!("the sink declares list, but it failed: {e}"));
        assert_eq!(k.ours(&listed), vec![("probe".to_owned(), 5)]);
    } else {
        assert_unavailable("list", listed);
    }
    let deleted = sink.delete(&key).await;
    if caps.delete {
        deleted.unwrap_or_else(|e| panic!("the sink declares delete, but it failed: {e}"));
        assert_missing(sink, &key, "after delete").await;
    } else {
        assert_unavailable("delete", deleted);
        assert_eq!(
            get_bytes(sink, &key).await,
            b"probe".to_vec(),
            "a refused delete must change nothing"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn pattern_is_consistent_at_any_offset() {
        let whole = pattern(0, 1000);
        for (off, len) in [(0, 10), (3, 17), (8, 8), (999, 1), (123, 456)] {
            assert_eq!(
                pattern(off, len),
                whole[off..off + len].to_vec(),
                "{off},{len}"
            );
        }
        assert_ne!(pattern(0, 64), pattern(64, 64));
    }
}
