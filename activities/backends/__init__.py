"""Hosting backends (DESIGN 4): `base` (interface, errors, naming), `sagemaker` (boto3),
`local` (the local stand-in for SageMaker hosting), `factory.create_backend(settings)`.

Kept import-free on purpose: `python -m activities.backends.local_model_server` imports this
package first, and every model-server start would pay for pydantic/botocore otherwise.
"""
