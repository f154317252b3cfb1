"""The AWS target: VPC, EKS, S3, RDS, ECR and workload identity (docs/aws.md)."""
