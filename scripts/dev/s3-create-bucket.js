// Creates the bucket scripts/dev/s3.sh hands to snapfork, through the S3 API the way a client
// would (radosgw-admin cannot create buckets). Reads the SNAPFORK_S3_* variables; retries while
// radosgw is still coming up; an existing bucket of ours is success.
import console from 'node:console';
import process from 'node:process';
import { setTimeout } from 'node:timers/promises';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';

const env = process.env;
const client = new S3Client({
  endpoint: env.SNAPFORK_S3_ENDPOINT,
  region: env.SNAPFORK_S3_REGION,
  forcePathStyle: true,
  credentials: { accessKeyId: env.SNAPFORK_S3_ACCESS_KEY_ID, secretAccessKey: env.SNAPFORK_S3_SECRET_ACCESS_KEY },
});
const Bucket = env.SNAPFORK_S3_BUCKET;

for (let attempt = 1; ; attempt++) {
  try {
    try {
      await client.send(new HeadBucketCommand({ Bucket }));
      console.error(`s3-create-bucket: bucket ${Bucket} exists`);
    } catch (e) {
      if (e?.$metadata?.httpStatusCode !== 404) throw e;
      await client.send(new CreateBucketCommand({ Bucket }));
      console.error(`s3-create-bucket: created bucket ${Bucket}`);
    }
    break;
  } catch (e) {
    if (attempt === 60) throw e;
    console.error(`s3-create-bucket: attempt ${attempt}: ${e?.name ?? e}; retrying`);
    await setTimeout(1000);
  }
}
client.destroy();
