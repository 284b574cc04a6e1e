//! The embedded default: librdkafka's in-process mock cluster, so `faultline run` with no
//! brokers and the tests exercise the same Kafka code path as production. The cluster
//! lives on a thread of its own (its handle is not `Send`) until the guard is dropped.

use rdkafka::mocking::MockCluster;
use std::sync::mpsc;
use std::thread::JoinHandle;

pub struct EmbeddedKafka {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster with the given topics and partition count.
    pub fn start(topics: &[String], partitions: i32) -> Result<EmbeddedKafka, String> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("kafka-mock".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the embedded Kafka cluster: {e}")));
                        return;
                    }
                };
                for topic in &topics {
                    if let Err(e) = cluster.create_topic(topic, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("cannot create topic {topic} on the embedded cluster: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .map_err(|e| e.to_string())?;
        let bootstrap = ready_rx.recv().map_err(|_| "the embedded Kafka thread died".to_owned())??;
        Ok(EmbeddedKafka { bootstrap, stop: Some(stop_tx), thread: Some(thread) })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
