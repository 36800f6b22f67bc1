//! Password hashing with Argon2id (SPEC section 2), on a few dedicated
//! threads at the lowest scheduling priority with a bounded queue, so that
//! a login flood can neither starve the async runtime nor queue without
//! bound: beyond the queue a hash is refused at once (`Busy` → 503).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

use crate::config::{PasswordHashing, Secret};

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// The queue of waiting hashes is full: shed the request (503) rather
    /// than let latency grow without bound.
    #[error("password hashing is saturated")]
    Busy,
    #[error("hashing failed: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// A few threads that do nothing but hash, at a lower scheduling priority
/// than the async runtime: when both want a core, request handling wins.
struct HashPool {
    jobs: mpsc::Sender<Job>,
    /// Jobs admitted and not finished (running or queued).
    admitted: AtomicUsize,
    /// Threads + queue length: the admission bound.
    capacity: usize,
}

/// The fallback when SCHED_IDLE is refused: how much nicer than the
/// runtime the hashing threads are (each nice step is about 1.25× less CPU
/// weight under contention).
const HASHING_NICENESS: i32 = 10;

impl HashPool {
    fn start(threads: usize, queue: usize) -> anyhow::Result<Arc<Self>> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            receiver.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            // Every sender is gone: the service is shutting down.
                            Err(_) => break,
                        }
                    }
                })?;
        }
        Ok(Arc::new(Self {
            jobs: sender,
            admitted: AtomicUsize::new(0),
            capacity: threads + queue,
        }))
    }

    /// Whether a job would be admitted now (racy: [`HashPool::run`] still
    /// decides).
    fn has_room(&self) -> bool {
        self.admitted.load(Ordering::Acquire) < self.capacity
    }

    /// Runs `work` on a hashing thread, or refuses at once when the queue
    /// is full. A caller that goes away before its turn costs no hash.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(HashingError::Busy);
        }
        let (reply, answer) = oneshot::channel();
        let pool = Arc::clone(self);
        let job: Job = Box::new(move || {
            let admission = Admission(pool);
            // A panicking hash loses its answer (the caller sees `Failed`),
            // not the thread.
            let outcome = if reply.is_closed() {
                None
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok()
            };
            // The place is free before the caller hears back.
            drop(admission);
            if let Some(value) = outcome {
                let _ = reply.send(value);
            }
        });
        if self.jobs.send(job).is_err() {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(HashingError::Failed("hashing threads stopped".into()));
        }
        answer
            .await
            .map_err(|_| HashingError::Failed("hashing thread panicked".into()))
    }
}

/// Releases a job's place in the pool when it ends, however it ends.
struct Admission(Arc<HashPool>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SCHED_IDLE: the thread runs only on CPU time nothing else at normal
    // priority wants, so request handling (and PostgreSQL on the same
    // host) always goes first; hashing throughput is what a flood costs.
    // SAFETY: neither call has memory-safety preconditions; the parameter
    // struct lives across the call. On Linux, pid 0 means this thread.
    let idle = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    if idle == 0 {
        return;
    }
    // Where SCHED_IDLE is refused, at least be nicer than the runtime.
    // SAFETY: as above; PRIO_PROCESS with a thread id sets that thread.
    let niced = unsafe {
        let thread_id = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread_id, HASHING_NICENESS)
    };
    if niced != 0 {
        tracing::warn!("could not lower the priority of a password-hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    pool: Arc<HashPool>,
}

impl Passwords {
    /// A hasher with the configured cost, threads and queue bound.
    pub fn new(config: PasswordHashing) -> anyhow::Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))?;
        Ok(Self {
            params,
            pool: HashPool::start(config.max_concurrent.max(1), config.max_queued)?,
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC-format Argon2id hash of `password` with a fresh salt.
    pub async fn hash(&self, password: &Secret) -> Result<String, HashingError> {
        let argon2 = self.argon2();
        let password = password.clone();
        self.pool
            .run(move || {
                argon2
                    .hash_password(password.expose().as_bytes())
                    .map(|hash| hash.to_string())
                    .map_err(|error| HashingError::Failed(error.to_string()))
            })
            .await?
    }

    /// Whether a stored hash was made with other parameters than the
    /// configured ones (or another algorithm) and should be upgraded after
    /// a successful login.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return true;
        };
        let param = |name: &str| {
            parsed
                .params
                .get_str(name)
                .and_then(|value| value.parse::<u32>().ok())
        };
        parsed.algorithm.as_str() != "argon2id"
            || param("m") != Some(self.params.m_cost())
            || param("t") != Some(self.params.t_cost())
            || param("p") != Some(self.params.p_cost())
    }

    /// Whether a hash would be admitted now. A login asks first, so that
    /// the part of a flood beyond the queue is shed before it costs a
    /// database lookup; the answer does not depend on the account, so it
    /// tells nothing about which emails exist.
    pub fn has_room(&self) -> bool {
        self.pool.has_room()
    }

    /// Whether `password` matches `hash`. A malformed hash verifies as
    /// false; it never panics. `Busy` when the hashing queue is full.
    pub async fn verify(&self, password: &Secret, hash: &str) -> Result<bool, HashingError> {
        let argon2 = self.argon2();
        let password = password.clone();
        let hash = hash.to_string();
        self.pool
            .run(move || match PasswordHash::new(&hash) {
                Ok(parsed) => argon2
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(PasswordHashing {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            max_queued: 8,
        })
        .expect("valid parameters")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = cheap();
        let hash = passwords
            .hash(&Secret::new("correct horse"))
            .await
            .expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords
            .verify(&Secret::new("correct horse"), &hash)
            .await
            .expect("admitted"));
        assert!(!passwords
            .verify(&Secret::new("wrong horse"), &hash)
            .await
            .expect("admitted"));
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_need_a_rehash() {
        let cheap = cheap();
        let hash = cheap.hash(&Secret::new("pw")).await.expect("hash");
        assert!(!cheap.needs_rehash(&hash));
        let stronger = Passwords::new(PasswordHashing {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 1,
            max_queued: 8,
        })
        .expect("valid");
        assert!(stronger.needs_rehash(&hash));
        assert!(stronger.needs_rehash("not a hash"));
    }

    #[tokio::test]
    async fn a_malformed_hash_verifies_as_false() {
        let passwords = cheap();
        for garbage in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=1,t=1,p=1$$",
        ] {
            assert!(
                !passwords
                    .verify(&Secret::new("x"), garbage)
                    .await
                    .expect("admitted"),
                "{garbage}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_admits_again_when_drained() {
        // One thread, two places in the queue.
        let pool = HashPool::start(1, 2).expect("pool");
        let (open_gate, gate) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || gate.recv().is_ok()).await })
        };
        let queued: Vec<_> = (0..2)
            .map(|n| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.run(move || n).await })
            })
            .collect();
        while pool.admitted.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.run(|| 9).await, Err(HashingError::Busy)));
        open_gate.send(()).expect("gate");
        assert!(busy.await.expect("task").expect("admitted"));
        for (n, job) in queued.into_iter().enumerate() {
            assert_eq!(job.await.expect("task").expect("admitted"), n);
        }
        assert_eq!(pool.run(|| 7).await.expect("admitted once drained"), 7);
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0);
    }
}
