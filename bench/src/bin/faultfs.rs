//! es-faultfs: a small FUSE filesystem for fault tests. It shows every regular file of a
//! backing directory under the mount point, passing reads, writes and fsyncs through to it,
//! until a marker file `NAME.fail` appears in the backing directory: from then on every I/O
//! on `NAME` fails with EIO, returned by the kernel to whoever uses the file (a RAID member,
//! say). Remove the marker and the file works again. Files are opened with direct I/O, so no
//! page cache hides the failure. A marker `NAME.slow` (holding milliseconds) makes each write
//! and fsync of NAME take that long instead. The filesystem unmounts itself on SIGINT/SIGTERM or after
//! `--duration` seconds.

use clap::Parser;
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request,
};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// A FUSE filesystem whose files fail with EIO on command (for RAID fault tests).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory whose regular files are shown.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount (an existing empty directory).
    #[arg(long)]
    mount: PathBuf,
    /// Unmount and exit after this many seconds at most.
    #[arg(long, default_value_t = 1800)]
    duration: u64,
}

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

struct Entry {
    name: String,
    file: File,
}

struct FaultFs {
    backing: PathBuf,
    entries: Vec<Entry>,
}

impl FaultFs {
    fn entry(&self, ino: u64) -> Option<&Entry> {
        ino.checked_sub(2)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// `NAME.slow` holds milliseconds: each write and fsync of NAME then takes that long
    /// (answered from its own thread, so the filesystem stays responsive: a disk stuck in
    /// its timeouts, not a hung mount).
    fn slow(&self, e: &Entry) -> Option<Duration> {
        let text = std::fs::read_to_string(self.backing.join(format!("{}.slow", e.name))).ok()?;
        Some(Duration::from_millis(text.trim().parse().unwrap_or(2000)))
    }

    fn failing(&self, e: &Entry) -> bool {
        self.backing.join(format!("{}.fail", e.name)).exists()
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm) = if ino == ROOT {
            (FileType::Directory, 0, 0o755)
        } else {
            let e = self.entry(ino)?;
            (FileType::RegularFile, e.file.metadata().ok()?.len(), 0o600)
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = (parent == ROOT)
            .then(|| {
                self.entries
                    .iter()
                    .position(|e| OsStr::new(&e.name) == name)
            })
            .flatten();
        match found.and_then(|i| self.attr(i as u64 + 2)) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if self.entry(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        reply.opened(0, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(e) = self.entry(ino) else {
            return reply.error(libc::ENOENT);
        };
        if self.failing(e) {
            return reply.error(libc::EIO);
        }
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match e.file.read_at(&mut buf[got..], offset as u64 + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) => return reply.error(err.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        reply.data(&buf[..got]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some(e) = self.entry(ino) else {
            return reply.error(libc::ENOENT);
        };
        if self.failing(e) {
            return reply.error(libc::EIO);
        }
        if let (Some(delay), Ok(file)) = (self.slow(e), e.file.try_clone()) {
            let data = data.to_vec();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                match file.write_all_at(&data, offset as u64) {
                    Ok(()) => reply.written(data.len() as u32),
                    Err(err) => reply.error(err.raw_os_error().unwrap_or(libc::EIO)),
                }
            });
            return;
        }
        match e.file.write_all_at(data, offset as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(err) => reply.error(err.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(e) = self.entry(ino) else {
            return reply.error(libc::ENOENT);
        };
        if self.failing(e) {
            return reply.error(libc::EIO);
        }
        if let (Some(delay), Ok(file)) = (self.slow(e), e.file.try_clone()) {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                match file.sync_data() {
                    Ok(()) => reply.ok(),
                    Err(err) => reply.error(err.raw_os_error().unwrap_or(libc::EIO)),
                }
            });
            return;
        }
        match e.file.sync_data() {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let mut all = vec![(ROOT, FileType::Directory, ".".to_string())];
        all.push((ROOT, FileType::Directory, "..".to_string()));
        for (i, e) in self.entries.iter().enumerate() {
            all.push((i as u64 + 2, FileType::RegularFile, e.name.clone()));
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() {
    let args = Args::parse();
    let mut entries = Vec::new();
    let list = std::fs::read_dir(&args.backing).unwrap_or_else(|e| {
        eprintln!("es-faultfs: {}: {e}", args.backing.display());
        std::process::exit(1)
    });
    for item in list.flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let regular = item.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !regular || name.ends_with(".fail") {
            continue;
        }
        match OpenOptions::new().read(true).write(true).open(item.path()) {
            Ok(file) => entries.push(Entry { name, file }),
            Err(e) => eprintln!("es-faultfs: skipping {name}: {e}"),
        }
    }
    let fs = FaultFs {
        backing: args.backing.clone(),
        entries,
    };
    let options = [
        MountOption::FSName("es-faultfs".into()),
        MountOption::RW,
        MountOption::AllowOther,
    ];
    let session = fuser::spawn_mount2(fs, &args.mount, &options).unwrap_or_else(|e| {
        eprintln!(
            "es-faultfs: cannot mount on {}: {e} (needs root and /dev/fuse: modprobe fuse)",
            args.mount.display()
        );
        std::process::exit(1)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    eprintln!(
        "es-faultfs: mounted {} on {}",
        args.backing.display(),
        args.mount.display()
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(session);
    eprintln!("es-faultfs: unmounted");
}
