"""Create the default local resources (idempotent): the landing bucket, the bronze queue with its DLQ and
redrive policy, the notification s3:ObjectCreated:* → queue, the silver and gold queues (with DLQs) in
LocalStack; the lake bucket in MinIO. `infra/local/pipeline.toml` points at exactly these.
Integration tests create their own isolated copies of these; this set is for manual runs and cargo lambda."""
import json
import os
import sys

import boto3

region = os.environ.get("AWS_REGION", "us-east-1")
which = sys.argv[1] if len(sys.argv) > 1 else "all"


def provision_localstack():
    ls = dict(endpoint_url=os.environ["LOCALSTACK_ENDPOINT"], region_name=region,
              aws_access_key_id="test", aws_secret_access_key="test")
    s3 = boto3.client("s3", **ls)
    sqs = boto3.client("sqs", **ls)

    landing, queue, dlq = os.environ["LANDING_BUCKET"], os.environ["BRONZE_QUEUE"], os.environ["BRONZE_DLQ"]
    s3.create_bucket(Bucket=landing)
    dlq_url = sqs.create_queue(QueueName=dlq, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q_url = sqs.create_queue(QueueName=queue, Attributes={
        "VisibilityTimeout": "300",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
    })["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=q_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                       "Resource": q_arn, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{landing}"}}}],
    })})
    s3.put_bucket_notification_configuration(Bucket=landing, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "bronze", "QueueArn": q_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    print(f"[provision] landing s3://{landing} -> {q_url} (DLQ {dlq})")
    # The layers' own queues: bronze announces to silver, silver to gold (each with a DLQ).
    for name in (os.environ["SILVER_QUEUE"], os.environ["GOLD_QUEUE"]):
        d_url = sqs.create_queue(QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
        d_arn = sqs.get_queue_attributes(QueueUrl=d_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": "300",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": d_arn, "maxReceiveCount": "3"}),
        })["QueueUrl"]
        print(f"[provision] queue {url} (DLQ {name}-dlq)")


def provision_minio():
    minio = boto3.client("s3", endpoint_url=os.environ["MINIO_ENDPOINT"], region_name=region,
                         aws_access_key_id=os.environ["MINIO_ROOT_USER"],
                         aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"])
    try:
        minio.create_bucket(Bucket=os.environ["LAKE_BUCKET"])
    except minio.exceptions.BucketAlreadyOwnedByYou:
        pass
    print(f"[provision] lake s3://{os.environ['LAKE_BUCKET']} on MinIO")


if which in ("localstack", "all"):
    provision_localstack()
if which in ("minio", "all"):
    provision_minio()
