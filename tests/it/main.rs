//! The integration tests: one binary, with a harness that runs the real
//! `infra` binary in a temporary directory against real PostgreSQL, real
//! Spark (the pyspark wheel) and real DuckDB.

mod harness;

mod airflow;
mod airflow_conformance;
mod airflow_run;
mod architecture;
mod bad_day;
mod cli;
mod deadlines;
mod errors;
mod experience;
mod faults;
mod fuzz;
mod gcp;
mod gcp_run;
mod iam;
mod load;
mod local_target;
mod offline_plan;
mod pipeline;
mod rehearsal;
mod rehearsal_deadlines;
mod secrets;
mod spark_runtime;
mod supply_chain;
mod terraform;
mod terraform_airflow;
