#!/usr/bin/env bash
# sqlite3 with a generated schema, inserts, indexes, joins, and an integrity check.
source "$(dirname "$0")/common.sh"
cat > "$WORK/script.sql" <<'SQL'
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, city TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers(id), amount REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO customers SELECT i, 'name' || i, 'city' || (i % 97) FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO orders SELECT i, 1 + (i * 7919) % 20000, (i % 1000) / 7.0, printf('%0*d', i % 200, i) FROM n;
CREATE INDEX orders_customer ON orders(customer);
CREATE INDEX customers_city ON customers(city);
SELECT city, count(*), round(sum(amount), 2) FROM customers JOIN orders ON orders.customer = customers.id
  GROUP BY city ORDER BY 3 DESC LIMIT 10;
SELECT count(DISTINCT note), max(length(note)) FROM orders;
UPDATE orders SET note = upper(note) || note WHERE id % 3 = 0;
DELETE FROM orders WHERE id % 5 = 0;
VACUUM;
SELECT count(*), round(sum(amount), 2) FROM orders;
PRAGMA integrity_check;
SQL
run_compare sqlite sh -c "rm -f '$WORK/db.sqlite' && sqlite3 '$WORK/db.sqlite' '.read $WORK/script.sql'"
