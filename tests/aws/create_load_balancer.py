"""Creates an application load balancer in a moto server and prints its ARN
and DNS name. ELBv2 needs subnets, which only EC2 gives; the Rust tests do
not link the EC2 SDK, so they ask boto3 (installed with moto) instead.

usage: create_load_balancer.py ENDPOINT NAME
"""
import sys

import boto3

endpoint, name = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
subnets = [s["SubnetId"] for s in boto3.client("ec2", **kw).describe_subnets()["Subnets"]][:2]
lb = boto3.client("elbv2", **kw).create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
print(lb["LoadBalancerArn"], lb["DNSName"])
