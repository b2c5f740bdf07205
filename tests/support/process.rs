//! Child processes and scratch directories that cannot outlive the test binary.
//!
//! Three layers, because a test binary can end in three ways:
//! - it dies (SIGKILL, SIGINT, a crash): every child spawned through [`spawn_guarded`] has
//!   `PR_SET_PDEATHSIG = SIGKILL` (Linux), so the kernel kills it. The signal fires when the
//!   *thread* that forked the child exits, so all children are forked by one dedicated thread that
//!   lives as long as the process (libtest runs each test on its own short-lived thread);
//! - it exits normally (all tests done, pass or fail): an `atexit` hook kills the children handed to
//!   [`keep_until_exit`] and removes the directories handed to [`remove_at_exit`] (statics are
//!   never dropped, so `Drop` cannot do it);
//! - after a death the scratch directories are left behind: [`scratch_dir`] removes those whose
//!   owning process is gone each time it makes a new one.

use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};

/// Prefix of every scratch directory under the system temp dir: `tmo-<kind>-<pid>-<random>`.
const SCRATCH_PREFIX: &str = "tmo-";

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it is killed when this test binary dies, however it dies (on Linux).
pub fn spawn_guarded(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("tmo-spawner".into())
            .spawn(move || {
                // Never returns: the sender lives in a static, so the channel never closes.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the process-spawner thread");
        tx
    });
    set_parent_death_signal(&mut cmd);
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the process-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the process-spawner thread did not answer"))?
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: runs between fork and exec; it only makes async-signal-safe system calls and
    // allocates nothing (the error is built from a raw OS code).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {
    // No PR_SET_PDEATHSIG outside Linux: children are still killed at a normal exit (atexit) and
    // on Drop, but not when the test binary is SIGKILLed.
}

#[derive(Default)]
struct AtExit {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

fn at_exit() -> &'static Mutex<AtExit> {
    static AT_EXIT: OnceLock<Mutex<AtExit>> = OnceLock::new();
    AT_EXIT.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` that never unwinds.
        let rc = unsafe { libc::atexit(run_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
        Mutex::new(AtExit::default())
    })
}

extern "C" fn run_at_exit() {
    let mut state = at_exit().lock().unwrap_or_else(PoisonError::into_inner);
    for child in &mut state.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    for dir in state.dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Keeps `child` running until the test binary exits, then kills it (see the module docs).
pub fn keep_until_exit(child: Child) {
    at_exit()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .children
        .push(child);
}

/// Removes `dir` when the test binary exits normally (after the children are killed).
pub fn remove_at_exit(dir: PathBuf) {
    at_exit()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .dirs
        .push(dir);
}

/// Creates a fresh scratch directory `tmo-<kind>-<pid>-<random>` in the system temp dir, after
/// removing the scratch directories of test processes that no longer exist.
pub fn scratch_dir(kind: &str) -> PathBuf {
    sweep_stale_scratch_dirs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!(
        "{SCRATCH_PREFIX}{kind}-{}-{}",
        std::process::id(),
        &random[..12]
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Removes every scratch directory whose owning process is gone (it died without cleaning up).
pub fn sweep_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(scratch_owner) else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a scratch directory name `tmo-<kind>-<pid>-<random>`.
pub fn scratch_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(SCRATCH_PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let _kind = parts.next()?;
    Some(pid)
}

/// Whether a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // /proc/<pid>/stat: "pid (comm) S ...": a zombie has exited, it only waits to be reaped.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }
}

/// A loopback TCP port nobody listens on right now. Keep the listener until the port is about to
/// be handed to a child so that two calls never return the same port.
pub fn free_port() -> (u16, TcpListener) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port");
    let port = listener.local_addr().expect("local addr").port();
    (port, listener)
}

/// The last `lines` lines of a (log) file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("(no {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
