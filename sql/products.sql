-- The product catalogue of the ShopNow+ demo shop, as Parquet.
CREATE EXTERNAL TABLE products STORED AS PARQUET LOCATION 'data/products/';

-- Products that will run out soon.
CREATE VIEW low_stock AS
SELECT product_id, name, category, stock FROM products WHERE stock < 5 AND active;
