"""Creates application load balancers in a moto server and prints the ARN
and DNS name of each, one per line. ELBv2 needs subnets, which only EC2
gives; the Rust tests do not link the EC2 SDK, so they ask boto3 (installed
with moto) instead.

usage: create_load_balancer.py ENDPOINT NAME [COUNT]
  COUNT absent: one load balancer called NAME; else NAME-0 … NAME-(COUNT-1).
"""
import sys

import boto3

endpoint, name = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else None
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
subnets = [s["SubnetId"] for s in boto3.client("ec2", **kw).describe_subnets()["Subnets"]][:2]
elbv2 = boto3.client("elbv2", **kw)
names = [name] if count is None else [f"{name}-{i}" for i in range(count)]
for n in names:
    lb = elbv2.create_load_balancer(Name=n, Subnets=subnets)["LoadBalancers"][0]
    print(lb["LoadBalancerArn"], lb["DNSName"])
