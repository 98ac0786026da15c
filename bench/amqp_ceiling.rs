//! The benchmark's RabbitMQ ceiling and set-up (bench/run.sh):
//!
//! - `amqp_ceiling setup URL EXCHANGE`: declares the exchange as the service does (durable topic)
//!   and a durable queue `EXCHANGE.all` bound to every key, so published messages are stored;
//! - `amqp_ceiling publish URL EXCHANGE N`: a plain publisher-confirms loop — N persistent messages
//!   of an event's size, 1 000 in flight at a time, each batch's confirms awaited — and prints
//!   `AMQP_CEILING=<messages/s>`;
//! - `amqp_ceiling teardown URL EXCHANGE`: deletes both.

use std::time::Instant;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

const IN_FLIGHT: usize = 1000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (cmd, url, exchange) = match &args[..] {
        [_, cmd, url, exchange, ..] => (cmd.as_str(), url.as_str(), exchange.as_str()),
        _ => anyhow::bail!("usage: amqp_ceiling setup|publish|teardown URL EXCHANGE [N]"),
    };
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let queue = format!("{exchange}.all");
    match cmd {
        "setup" => {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        "publish" => {
            let n: usize = args.get(4).map_or(Ok(20_000), |n| n.parse())?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            // about the size of a `user.created` envelope
            let body = vec![b'x'; 640];
            let started = Instant::now();
            let mut sent = 0;
            while sent < n {
                let mut confirms = Vec::with_capacity(IN_FLIGHT);
                for i in sent..n.min(sent + IN_FLIGHT) {
                    let properties = BasicProperties::default()
                        .with_message_id(format!("ceiling-{i}").into())
                        .with_type("user.created".into())
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2);
                    confirms.push(
                        channel
                            .basic_publish(
                                exchange.into(),
                                "user.created".into(),
                                BasicPublishOptions::default(),
                                &body,
                                properties,
                            )
                            .await?,
                    );
                }
                sent += confirms.len();
                for c in confirms {
                    anyhow::ensure!(c.await?.is_ack(), "the broker refused a message");
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!("AMQP_CEILING={:.1}", n as f64 / secs);
        }
        "teardown" => {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        other => anyhow::bail!("unknown command {other}"),
    }
    Ok(())
}
