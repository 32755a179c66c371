"""Deployment artefacts without a cluster or a Docker engine: Dockerfile, Helm chart, dashboard."""
