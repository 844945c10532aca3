"""A real Redis Cluster the replay store accepts: appendonly on every primary."""

from __future__ import annotations

import redis

from tests._support.redis_cluster import RedisCluster


def durable(cluster: RedisCluster) -> RedisCluster:
    """Turn on ``appendonly`` on every node of ``cluster`` (a primary restarted then
    keeps its records; the replay store refuses a cluster without it)."""
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        try:
            node.config_set("appendonly", "yes")
        finally:
            node.close()
    return cluster
