//! Live tailing without polling: one connection LISTENs on the channel every append
//! NOTIFYs (in its transaction, so a notification means committed events), and waiters
//! watch the highest log position announced.

use tokio::sync::{watch, Mutex};
use tokio_postgres::{AsyncMessage, Client};

use super::{conn::Pool, schema::CHANNEL};

struct Listener {
    /// Kept open: LISTEN lasts as long as its session.
    client: Client,
    rx: watch::Receiver<i64>,
}

/// The listening connection, opened on first use and again after it is lost.
#[derive(Default)]
pub(super) struct Notifications(Mutex<Option<Listener>>);

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifications")
    }
}

impl Notifications {
    /// A receiver of the highest log position announced since listening began.
    pub async fn receiver(
        &self,
        pool: &Pool,
    ) -> Result<watch::Receiver<i64>, tokio_postgres::Error> {
        let mut slot = self.0.lock().await;
        if let Some(l) = slot.as_ref().filter(|l| !l.client.is_closed()) {
            return Ok(l.rx.clone());
        }
        let (client, mut connection) = pool.connect_unspawned().await?;
        let (tx, rx) = watch::channel(0i64);
        tokio::spawn(async move {
            while let Some(msg) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match msg {
                    Ok(AsyncMessage::Notification(n)) => {
                        if let Ok(seq) = n.payload().parse::<i64>() {
                            tx.send_modify(|v| *v = (*v).max(seq));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        *slot = Some(Listener {
            client,
            rx: rx.clone(),
        });
        Ok(rx)
    }
}
