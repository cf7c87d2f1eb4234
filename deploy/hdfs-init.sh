#!/bin/bash
# Copies the examples' batch data into HDFS once the namenode is up: ShopSphere's
# history and the marketing campaigns, under /examples (WEIR_EXAMPLE_DATA), and makes the
# archive folder (WEIR_ARCHIVE) writable.
set -eu
until hdfs dfs -ls / >/dev/null 2>&1; do echo "waiting for HDFS"; sleep 2; done
hdfs dfs -mkdir -p /examples /archive
hdfs dfs -put -f /data/shopsphere/history /examples/
hdfs dfs -put -f /data/marketing-roi/campaigns /examples/
hdfs dfs -chmod -R 777 /examples /archive
echo "HDFS ready: $(hdfs dfs -ls -R /examples | wc -l) entries under /examples"
