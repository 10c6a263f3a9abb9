// Writes sample.parquet (the real Parquet file the store tests import) with a real Parquet
// writer (@dsnp/parquetjs 1.x from npm, node 20). Run it from a scratch directory outside the
// repository (ES modules resolve packages next to the script, hence the copy):
//   mkdir /tmp/pq && cd /tmp/pq && npm init -y && npm install @dsnp/parquetjs@1
//   cp REPO/tests/store/data/make_sample_parquet.mjs . && node make_sample_parquet.mjs \
//     REPO/tests/store/data/sample.parquet
import parquet from '@dsnp/parquetjs';

const out = process.argv[2] ?? 'sample.parquet';
const schema = new parquet.ParquetSchema({
  species: { type: 'UTF8' },
  sepal_length: { type: 'DOUBLE' },
  petal_count: { type: 'INT64' },
  observed: { type: 'BOOLEAN' },
});
const writer = await parquet.ParquetWriter.openFile(schema, out);
const species = ['setosa', 'versicolor', 'virginica'];
for (let i = 0; i < 60; i++) {
  await writer.appendRow({
    species: species[i % 3],
    sepal_length: 4.3 + (i % 17) * 0.2,
    petal_count: BigInt(i),
    observed: i % 2 === 0,
  });
}
await writer.close();
