//! A small tmpfs mounted for one test: a disk that really fills up.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Without it [`Tmpfs::mount`] says
//! why, and the test skips loudly. The mount is detached when the value is
//! dropped, on every path including a panic; declare it before the
//! [`crate::TestCluster`] whose node uses it, so that the node is killed
//! (dropped first) before the file system goes.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A tmpfs of a fixed size on a temporary mount point.
pub struct Tmpfs {
    /// The mount point (removed after unmounting).
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB, owner-only, or says why it cannot.
    pub fn mount(size_mib: u64) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("vault-tmpfs-")
            .tempdir()
            .map_err(|error| format!("cannot create a mount point: {error}"))?;
        let target = c_path(dir.path());
        let options = CString::new(format!("size={size_mib}m,mode=0700")).unwrap_or_default();
        let source = CString::new("tmpfs").unwrap_or_default();
        // SAFETY: every pointer is a valid NUL-terminated string that
        // outlives the call.
        let mounted = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Tmpfs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with `name` until a write fails with ENOSPC,
    /// and returns the file's path: delete it to give the space back.
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path).expect("create the ballast");
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(error) => panic!("writing the ballast: {error}"),
            }
        }
        // Whatever is left (less than a chunk) is taken byte by byte.
        while let Ok(1) = file.write(&[0xa5]) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c_path(self.dir.path());
        // SAFETY: a valid C string; MNT_DETACH unmounts even if a file is
        // still open, so the mount never outlives the test.
        unsafe {
            libc::umount2(target.as_ptr(), libc::MNT_DETACH);
        }
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Copies the directory tree `from` into `to` (created), keeping modes.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}
