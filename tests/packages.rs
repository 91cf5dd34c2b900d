//! Issue 21: the packages, each built and checked by its script in scripts/ (test-deb.sh,
//! test-ipk.sh, test-apk.sh, test-dist.sh, test-container.sh) against the binary under test.
//! This module only runs them: a script's exit 77 means "cannot run here" (not root, no dpkg,
//! no apk-tools v3, no podman, no static image), which goes through `util::skip` (so it fails
//! under CI) for the .deb, and is a plain skip for the container, which needs `make musl`'s
//! static image that a clean CI checkout does not build (`make container-test` runs it), and
//! for the .apk, which needs apk-tools v3 built from source (Debian 12 has no package).

use std::process::Command;

use crate::util;

enum Skip {
    /// A skip hides a test CI must run: `util::skip` fails under CI.
    FailsInCi,
    /// Needs what CI does not build (the static image): skipped everywhere with a message.
    Allowed,
}

fn run_script(script: &str, skip: Skip) {
    let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(&path)
        .arg(env!("CARGO_BIN_EXE_btest"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {path}: {e}"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(77) {
        let why = stderr.lines().last().unwrap_or("skipped").to_string();
        match skip {
            Skip::FailsInCi => util::skip(&why),
            Skip::Allowed => eprintln!("skipped: {why}"),
        }
        return;
    }
    assert!(
        o.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        o.status
    );
    // Shown with --nocapture: what was checked.
    println!("{stdout}");
}

/// The .deb: control fields, conffiles, files, dpkg -i, --version, a 1 s loopback test with
/// the installed binary, a changed conffile kept on reinstall, dpkg --purge leaves nothing.
/// Root only (dpkg -i), and one run at a time per machine (the script takes a lock).
#[test]
fn deb_installs_runs_and_purges() {
    run_script("test-deb.sh", Skip::FailsInCi);
}

/// The OpenWrt .ipk: opkg's layout, control fields, conffiles, modes, architecture names,
/// the packaged binary runs; the feed package directory's files.
#[test]
fn ipk_layout_control_and_conffiles() {
    run_script("test-ipk.sh", Skip::FailsInCi);
}

/// The OpenWrt 25.12 .apk, with apk itself: info, install into an empty root, a changed
/// config kept on upgrade and on removal. Only where apk-tools v3 is (APK=/path/to/apk).
#[test]
fn apk_installs_upgrades_and_keeps_config() {
    run_script("test-apk.sh", Skip::Allowed);
}

/// `make dist`: a tarball per target with README, man page and completions; SHA256SUMS.
#[test]
fn dist_tarballs_and_checksums() {
    run_script("test-dist.sh", Skip::FailsInCi);
}

/// The FROM-scratch container image, built and run (host network) when podman and the static
/// image are here.
#[test]
fn container_image_builds_and_serves() {
    run_script("test-container.sh", Skip::Allowed);
}
