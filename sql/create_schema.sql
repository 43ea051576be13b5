-- Step 0: the table the purchase CSV is loaded into.
-- Idempotent: `infra run` executes it in the same transaction as the load.
CREATE SCHEMA IF NOT EXISTS bootcampdb;

CREATE TABLE IF NOT EXISTS bootcampdb.user_purchase (
    invoice_number varchar(10),
    stock_code     varchar(20),
    detail         varchar(1000),
    quantity       int,
    invoice_date   timestamp,
    unit_price     numeric(8,3),
    customer_id    int,
    country        varchar(20)
);
