//! A disk that fills up under the embedded SQLite: writes are rejected with a clear, retryable
//! reason, nothing acknowledged is lost or corrupt, the server goes on serving, and writes succeed
//! again once there is room. The disk is a real tmpfs of a few MiB (mounting it needs root, as the
//! README's test command runs; without it the test fails and says so).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::sync::SyncClient;
use support::{RawClient, ServeProcess};

/// A tmpfs of `mib` MiB, unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(name: &str, mib: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a {mib} MiB tmpfs at {}: this test needs root (scripts/test runs as root)",
            dir.display()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn serve(disk: &SmallDisk) -> ServeProcess {
    ServeProcess::start(&["--data", disk.path().join("data").to_str().expect("utf-8")])
}

#[tokio::test]
async fn a_full_disk_rejects_writes_retryably_keeps_what_was_acked_and_recovers() {
    let disk = SmallDisk::mount("disk-full", 8);
    // Room to give back later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).expect("filler");
    let server = serve(&disk);
    let (mut client, _) = SyncClient::subscribe(server.addr, "big", "writer", None).await;
    let blob = "x".repeat(200 << 10);
    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let id = format!("e{n}");
        client.mutate(&format!("m{n}"), &id, json!({"blob": blob, "n": n}), None).await;
        let answer = client.answer(&format!("m{n}")).await;
        if answer["type"] == "ack" {
            acked.push(id);
        } else {
            refused = Some((n, answer));
            break;
        }
    }
    let (n, reject) = refused.expect("the disk filled up before 200 writes of 200 KiB");
    assert!(acked.len() > 3, "some writes fitted first: {}", acked.len());
    let reason = reject["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("disk is full"), "{reject}");
    assert_eq!(reject["retryable"], true, "{reject}");

    // Still serving, and every acknowledged entity is there.
    let mut echo = RawClient::connect(server.addr, "/echo", &[]).await;
    echo.send(true, 0, 1, b"ok?").await;
    assert_eq!(echo.recv().await.expect("echo").payload, b"ok?");
    let (_, snapshot) = SyncClient::subscribe(server.addr, "big", "reader", None).await;
    let ids: Vec<_> = snapshot[0]["entities"].as_array().expect("entities").iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids.len(), acked.len(), "exactly the acknowledged writes");

    // Room again: the same mutation, sent again, goes through.
    std::fs::remove_file(&filler).expect("free the space");
    client.mutate(&format!("m{n}"), &format!("e{n}"), json!({"blob": blob, "n": n}), None).await;
    assert_eq!(client.answer(&format!("m{n}")).await["type"], "ack");

    // And a restart finds all of it intact.
    drop(client);
    drop(server);
    let server = serve(&disk);
    let (_, snapshot) = SyncClient::subscribe(server.addr, "big", "reader", None).await;
    assert_eq!(snapshot[0]["entities"].as_array().map(Vec::len), Some(acked.len() + 1));
}
