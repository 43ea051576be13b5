"""TEST-ONLY: points the Google provider's hooks at the rehearsal's
stand-ins. tests/it/airflow_run.rs puts this directory on PYTHONPATH for
the Airflow process it starts, and nowhere else: the shipped DAG has no
endpoint setting, because the provider's hooks have none
(https://github.com/apache/airflow/issues/53596).

- Cloud Storage: google-cloud-storage honours STORAGE_EMULATOR_HOST itself.
- Cloud SQL (discovery-based googleapiclient) and BigQuery
  (google-cloud-bigquery): the hooks' `get_client_options` names the
  stand-in's URL (`api_endpoint`).
- Dataproc (GAPIC clients): the hook builds its clients with the REST
  transport (`transport="rest"`, which sends `$alt=json;enum-encoding=int`
  and integer enums) at the stand-in's URL; gRPC has no stand-in.
- The operators' polling intervals (20 s for Cloud SQL operations, 10 s for
  Dataproc jobs) are shortened to 1 s: wall time only.

The URLs come from the environment that points infra at the same stand-ins
(INFRA_ENDPOINTS_*). Nothing is patched unless INFRA_AIRFLOW_SHIM=1.
"""

import functools
import os


def _install():
    from google.api_core.client_options import ClientOptions
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from airflow.providers.google.cloud.hooks.cloud_sql import CloudSQLHook
    from airflow.providers.google.cloud.hooks import dataproc
    from google.cloud.dataproc_v1 import ClusterControllerClient, JobControllerClient

    sqladmin = os.environ["INFRA_ENDPOINTS_SQLADMIN"].rstrip("/") + "/"
    bigquery = os.environ["INFRA_ENDPOINTS_BIGQUERY"].rstrip("/")
    dataproc_url = os.environ["INFRA_ENDPOINTS_DATAPROC"].rstrip("/")

    CloudSQLHook.get_client_options = lambda self, api_endpoint_override=None: ClientOptions(
        api_endpoint=sqladmin
    )
    BigQueryHook.get_client_options = lambda self, api_endpoint_override=None: ClientOptions(
        api_endpoint=bigquery
    )

    def rest_client(cls):
        def get(self, region=None):
            return cls(
                credentials=self.get_credentials(),
                client_info=dataproc.CLIENT_INFO,
                client_options=ClientOptions(api_endpoint=dataproc_url),
                transport="rest",
            )

        return get

    dataproc.DataprocHook.get_cluster_client = rest_client(ClusterControllerClient)
    dataproc.DataprocHook.get_job_client = rest_client(JobControllerClient)

    CloudSQLHook._wait_for_operation_to_complete = functools.partialmethod(
        CloudSQLHook._wait_for_operation_to_complete, time_to_sleep=1
    )
    dataproc.DataprocHook.wait_for_job = functools.partialmethod(
        dataproc.DataprocHook.wait_for_job, wait_time=1
    )


if os.environ.get("INFRA_AIRFLOW_SHIM") == "1":
    _install()
