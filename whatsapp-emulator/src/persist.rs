//! The optional state file: what the real WhatsApp server remembers across restarts (linked
//! devices with their credentials, known accounts, the device-id counter), written
//! atomically after every change. Messages, QR refs, pairing codes, drop windows and
//! connections stay in memory only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format version written in the file.
const VERSION: u32 = 1;

/// The persistent part of the emulator's state, as stored in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    /// Format version, [`VERSION`].
    pub(crate) version: u32,
    /// The last device number handed out (`dev-N`); new ids continue after it.
    pub(crate) next_device: u64,
    /// Numbers that have WhatsApp.
    pub(crate) accounts: BTreeSet<String>,
    /// How many devices each phone has linked so far (the `device_number` of the next link).
    pub(crate) linked_per_phone: BTreeMap<String, u32>,
    /// The linked devices.
    pub(crate) devices: Vec<LinkedDevice>,
}

/// One linked device: enough for its stored credentials to log in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkedDevice {
    /// `dev-N`.
    pub(crate) id: String,
    /// The profile's static key, which names the device at every hello.
    pub(crate) static_key: String,
    /// The secret the page stored when it was linked.
    pub(crate) secret: String,
    /// The phone that linked it.
    pub(crate) phone: String,
    /// Its number among the phone's linked devices.
    pub(crate) device_number: u32,
}

impl Snapshot {
    pub(crate) fn new() -> Self {
        Snapshot {
            version: VERSION,
            ..Snapshot::default()
        }
    }
}

fn bad_file(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("emulator state file {}: {what}", path.display()),
    )
}

/// Reads the state file; `Ok(None)` when it does not exist yet.
pub(crate) fn load(path: &Path) -> io::Result<Option<Snapshot>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot read the emulator state file {}: {e}",
                    path.display()
                ),
            ));
        }
    };
    let mut snap: Snapshot = serde_json::from_str(&text)
        .map_err(|e| bad_file(path, format!("not a valid state file ({e})")))?;
    if snap.version != VERSION {
        return Err(bad_file(
            path,
            format!(
                "format version {} is not supported (expected {VERSION})",
                snap.version
            ),
        ));
    }
    let mut ids = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for d in &snap.devices {
        let n =
            d.id.strip_prefix("dev-")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| bad_file(path, format!("device id {:?} is not dev-N", d.id)))?;
        if !ids.insert(d.id.as_str()) {
            return Err(bad_file(path, format!("device {} appears twice", d.id)));
        }
        if !keys.insert(d.static_key.as_str()) {
            return Err(bad_file(
                path,
                format!("device {} shares its static key with another", d.id),
            ));
        }
        if d.secret.is_empty() || d.phone.is_empty() {
            return Err(bad_file(
                path,
                format!("device {} has an empty secret or phone", d.id),
            ));
        }
        // New ids must never collide with loaded ones, whatever the counter says.
        snap.next_device = snap.next_device.max(n);
    }
    Ok(Some(snap))
}

/// Writes the state file atomically: a temporary file next to it, fsync, rename, then fsync
/// of the directory.
pub(crate) fn save(path: &Path, snap: &Snapshot) -> io::Result<()> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write the emulator state file {} ({what}): {e}",
                path.display()
            ),
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| context("create its directory", e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let body = serde_json::to_vec_pretty(snap).map_err(io::Error::other)?;
    let write = || -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // It holds device secrets.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&body)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(context("write a temporary file", e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(context("rename the temporary file", e));
    }
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_empty_and_a_saved_one_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        assert_eq!(load(&path).unwrap(), None);
        let mut snap = Snapshot::new();
        snap.next_device = 1;
        snap.accounts.insert("34600000000".into());
        snap.devices.push(LinkedDevice {
            id: "dev-4".into(),
            static_key: "S1".into(),
            secret: "x".into(),
            phone: "34600000000".into(),
            device_number: 1,
        });
        save(&path, &snap).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(
            back.next_device, 4,
            "the counter is at least the highest id"
        );
        assert_eq!(back.devices, snap.devices);
        assert_eq!(back.accounts, snap.accounts);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for body in [
            "",
            "{not json",
            r#"{"version": 9, "next_device": 0, "accounts": [], "linked_per_phone": {}, "devices": []}"#,
            r#"{"version": 1, "next_device": 0, "accounts": [], "linked_per_phone": {}, "devices": [{"id": "x", "static_key": "S", "secret": "s", "phone": "1", "device_number": 1}]}"#,
        ] {
            fs::write(&path, body).unwrap();
            let err = load(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{body}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }
}
