//! `uspwatch bench`: the load harness.

/// Arguments of `uspwatch bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("the load harness is not built yet")
}
