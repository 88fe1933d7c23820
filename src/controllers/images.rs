//! Images the controllers need (node images, load balancer images, `preLoadImages`), pulled
//! when the engine lacks them: in the background, once per image however many objects wait for
//! it (a reconcile that finds a pull under way says so and looks again soon, without holding a
//! worker), with credentials from the Docker configuration the manager was given.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Error;
use crate::docker::{self, ContainerRuntime, credentials};

/// How long a failed pull is reported before the next attempt may pull again: the objects
/// that wait for the image then all see the same failure, and the registry one attempt.
const FAILED_FOR: Duration = Duration::from_secs(10);

/// How long one pull may take before it counts as failed.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The pulls under way and failed lately, shared by both controllers.
#[derive(Debug, Default)]
pub struct Pulls {
    /// The Docker CLI configuration to read credentials from, at each pull (so a rotated
    /// Secret is seen); `None`: anonymous pulls.
    docker_config: Option<PathBuf>,
    state: Mutex<HashMap<String, State>>,
}

#[derive(Clone, Debug)]
enum State {
    Pulling,
    Failed { error: Arc<PullError>, at: Instant },
}

/// A failed pull, kept to be shown to every object that waits for the image.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The engine or the registry refused.
    #[error(transparent)]
    Docker(#[from] docker::Error),
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] credentials::Error),
}

impl Pulls {
    /// Pulls with credentials from `docker_config` (a Docker CLI `config.json`).
    pub fn new(docker_config: Option<PathBuf>) -> Self {
        Self {
            docker_config,
            state: Mutex::default(),
        }
    }

    /// Ok once the engine has `image`. Otherwise a pull is started (unless one is under way)
    /// and [`Error::ImagePulling`] returned, or the failure of the last pull, for a while.
    pub async fn ensure<D: ContainerRuntime + Clone>(
        self: &Arc<Self>,
        docker: &D,
        image: &str,
    ) -> Result<(), Error> {
        if docker.image_exists(image).await? {
            self.lock().remove(image);
            return Ok(());
        }
        let mut state = self.lock();
        match state.get(image) {
            Some(State::Pulling) => {}
            Some(State::Failed { error, at }) if at.elapsed() < FAILED_FOR => {
                return Err(Error::ImagePull {
                    image: image.to_string(),
                    preload: false,
                    error: error.clone(),
                });
            }
            _ => {
                state.insert(image.to_string(), State::Pulling);
                self.start(docker.clone(), image.to_string());
            }
        }
        Err(Error::ImagePulling {
            image: image.to_string(),
            preload: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pull of `image`, in a task of its own; its end is recorded for the next look.
    fn start<D: ContainerRuntime>(self: &Arc<Self>, docker: D, image: String) {
        let pulls = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            info!(%image, "pulling image");
            let result = match tokio::time::timeout(PULL_TIMEOUT, pulls.pull(&docker, &image)).await
            {
                Ok(result) => result,
                Err(_) => Err(PullError::Docker(docker::Error::Pull {
                    image: image.clone(),
                    failure: docker::PullFailure::Unreachable,
                    message: format!("no answer from the registry in {PULL_TIMEOUT:?}"),
                })),
            };
            let mut state = pulls.lock();
            match result {
                Ok(()) => {
                    info!(%image, elapsed = ?started.elapsed(), "image pulled");
                    state.remove(&image);
                }
                Err(error) => {
                    warn!(%image, error = %error, "image pull failed");
                    let error = Arc::new(error);
                    let at = Instant::now();
                    state.insert(image, State::Failed { error, at });
                }
            }
        });
    }

    async fn pull<D: ContainerRuntime>(&self, docker: &D, image: &str) -> Result<(), PullError> {
        let auth = credentials::for_image(self.docker_config.as_deref(), image).await?;
        if let Some(auth) = &auth {
            // Which registry and user, never the secret.
            info!(%image, registry = %auth.server, user = %auth.username, "pulling with credentials");
        }
        docker.pull_image(image, auth.as_ref()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::PullFailure;
    use crate::docker::fake::Fake;

    async fn settle(pulls: &Arc<Pulls>, image: &str) {
        for _ in 0..100 {
            if !matches!(pulls.lock().get(image), Some(State::Pulling)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the pull of {image} never ended");
    }

    fn reason(r: Result<(), Error>) -> &'static str {
        r.err().map_or("Present", |e| e.reason())
    }

    #[tokio::test]
    async fn ten_waiters_one_pull() {
        let docker = Fake::default().in_registry("reg.example/node:v1", Ok(&["/sbin/init"]));
        let gate = docker.hold_pulls();
        let pulls = Arc::new(Pulls::default());
        for _ in 0..10 {
            let r = pulls.ensure(&docker, "reg.example/node:v1").await;
            assert_eq!(reason(r), "PullingImage");
        }
        gate.send(true).expect("open");
        settle(&pulls, "reg.example/node:v1").await;
        assert_eq!(
            reason(pulls.ensure(&docker, "reg.example/node:v1").await),
            "Present"
        );
        let pulled = docker
            .calls()
            .iter()
            .filter(|c| c.starts_with("pull_image"))
            .count();
        assert_eq!(pulled, 1, "{:?}", docker.calls());
    }

    #[tokio::test]
    async fn failures_are_told_apart_and_shown_to_every_waiter() {
        let docker = Fake::default()
            .in_registry("reg.example/a:v1", Err(PullFailure::Unauthorized))
            .in_registry("reg.example/b:v1", Err(PullFailure::Unreachable))
            .in_registry("reg.example/c:v1", Err(PullFailure::Other));
        let pulls = Arc::new(Pulls::default());
        for (image, expected) in [
            ("reg.example/a:v1", "ImagePullUnauthorized"),
            ("reg.example/b:v1", "ImageRegistryUnreachable"),
            ("reg.example/c:v1", "ImagePullFailed"),
            ("reg.example/missing:v1", "ImageNotFound"),
        ] {
            assert_eq!(reason(pulls.ensure(&docker, image).await), "PullingImage");
            settle(&pulls, image).await;
            for _ in 0..3 {
                assert_eq!(
                    reason(pulls.ensure(&docker, image).await),
                    expected,
                    "{image}"
                );
            }
        }
        let pulled = docker
            .calls()
            .iter()
            .filter(|c| c.starts_with("pull_image"))
            .count();
        assert_eq!(pulled, 4, "one pull per image, not per look");
    }

    #[tokio::test]
    async fn credentials_from_the_config_reach_the_pull() {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("config.json");
        // alice:s3cret
        std::fs::write(
            &config,
            r#"{"auths": {"http://reg.example": {"auth": "YWxpY2U6czNjcmV0"}}}"#,
        )
        .expect("write");
        let docker = Fake::default().in_registry("reg.example/a:v1", Ok(&[]));
        let pulls = Arc::new(Pulls::new(Some(config)));
        let _ = pulls.ensure(&docker, "reg.example/a:v1").await;
        settle(&pulls, "reg.example/a:v1").await;
        assert!(
            docker
                .calls()
                .contains(&"pull_image reg.example/a:v1 alice".to_string())
        );
    }

    #[tokio::test]
    async fn an_unreadable_config_is_a_condition_not_a_panic() {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("config.json");
        std::fs::write(&config, "{not json").expect("write");
        let docker = Fake::default();
        let pulls = Arc::new(Pulls::new(Some(config)));
        let _ = pulls.ensure(&docker, "reg.example/a:v1").await;
        settle(&pulls, "reg.example/a:v1").await;
        let e = pulls
            .ensure(&docker, "reg.example/a:v1")
            .await
            .expect_err("fails");
        assert_eq!(e.reason(), "DockerConfigInvalid");
        assert!(
            e.to_string().contains("is not valid: not JSON at line 1"),
            "{e}"
        );
    }
}
