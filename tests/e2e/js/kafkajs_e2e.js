#!/usr/bin/env node
// kafkajs end-to-end check against a running ringbroker.
//
// Usage: node kafkajs_e2e.js HOST:PORT [TOPIC]
// Exit code 0 on success, 1 on any mismatch or error.
//
// ringbroker has no consumer groups yet, so records are read back with a raw
// Fetch issued through kafkajs's own Cluster/Broker internals
// (kafkajs/src/cluster -> findBroker -> broker.fetch), which is what the
// kafkajs consumer does underneath.
'use strict'

const assert = require('assert')
const { Kafka, logLevel } = require('kafkajs')
const Cluster = require('kafkajs/src/cluster')
const { createLogger, LEVELS } = require('kafkajs/src/loggers')
const LoggerConsole = require('kafkajs/src/loggers/console')
const defaultSocketFactory = require('kafkajs/src/network/socketFactory')

const bootstrap = process.argv[2] || '127.0.0.1:9092'
const topic = process.argv[3] || `kafkajs-${Date.now()}-${Math.floor(Math.random() * 1e6)}`
const PARTITIONS = 2
const N = 1000
const BASE_TS = 1_690_000_000_000

const overall = setTimeout(() => {
  console.error('kafkajs_e2e: overall timeout (120 s)')
  process.exit(2)
}, 120_000)

function expectedMessages() {
  const msgs = []
  for (let i = 0; i < N; i++) {
    msgs.push({
      key: `key-${i % 17}`,
      value: `value-${i}-${'x'.repeat(i % 50)}`,
      partition: i % PARTITIONS,
      headers: { idx: String(i), src: 'kafkajs' },
      timestamp: BASE_TS + i,
    })
  }
  return msgs
}

async function fetchAll(cluster, partition, highWatermark) {
  // Read [0, highWatermark) of one partition with raw Fetch requests.
  await cluster.addTargetTopic(topic)
  const leaders = cluster.findLeaderForPartitions(topic, [partition])
  const nodeIds = Object.keys(leaders)
  assert.strictEqual(nodeIds.length, 1, `no leader for ${topic}/${partition}`)
  const broker = await cluster.findBroker({ nodeId: nodeIds[0] })
  const out = []
  let offset = 0
  const deadline = Date.now() + 60_000
  while (offset < highWatermark) {
    assert.ok(Date.now() < deadline, `fetch timed out at offset ${offset}/${highWatermark}`)
    const resp = await broker.fetch({
      replicaId: -1,
      isolationLevel: 0,
      maxWaitTime: 500,
      minBytes: 1,
      maxBytes: 4 * 1024 * 1024,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: 256 * 1024 }] }],
    })
    const t = resp.responses.find(r => r.topicName === topic)
    assert.ok(t, 'topic missing from fetch response')
    const p = t.partitions.find(pp => pp.partition === partition)
    assert.ok(p, 'partition missing from fetch response')
    assert.strictEqual(p.errorCode, 0, `fetch error ${p.errorCode}`)
    assert.strictEqual(String(p.highWatermark), String(highWatermark), 'high watermark changed')
    for (const m of p.messages) {
      const o = Number(m.offset)
      if (o < offset) continue // batch started before the requested offset
      assert.strictEqual(o, offset, `gap: expected offset ${offset}, got ${o}`)
      out.push(m)
      offset++
    }
  }
  return out
}

async function main() {
  const kafka = new Kafka({
    clientId: 'ringbroker-e2e-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 200 },
  })

  // ---- admin
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '86400000' }] }],
    waitForLeaders: true,
    timeout: 30000,
  })
  assert.strictEqual(created, true, 'createTopics returned false (topic existed?)')
  const topics = await admin.listTopics()
  assert.ok(topics.includes(topic), `listTopics lacks ${topic}`)
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  assert.strictEqual(md.topics.length, 1)
  const parts = md.topics[0].partitions.map(p => p.partitionId).sort()
  assert.deepStrictEqual(parts, [0, 1])
  // Every leader is a broker of the cluster (the only one, on a single node).
  const brokerIds = (await admin.describeCluster()).brokers.map(b => b.nodeId)
  for (const p of md.topics[0].partitions) {
    assert.ok(brokerIds.includes(p.leader), `partition ${p.partitionId} leader ${p.leader} not in ${brokerIds}`)
    assert.strictEqual(p.partitionErrorCode, 0)
  }
  let offsets = await admin.fetchTopicOffsets(topic)
  for (const o of offsets) {
    assert.strictEqual(o.low, '0')
    assert.strictEqual(o.high, '0')
  }

  // ---- producer (acks -1, no idempotence)
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false })
  await producer.connect()
  const msgs = expectedMessages()
  const results = []
  for (let i = 0; i < N; i += 100) {
    const r = await producer.send({ topic, acks: -1, timeout: 30000, messages: msgs.slice(i, i + 100) })
    for (const rm of r) {
      assert.strictEqual(rm.errorCode, 0, `produce error ${rm.errorCode}`)
      results.push(rm)
    }
  }
  await producer.disconnect()
  assert.ok(results.length > 0)

  offsets = await admin.fetchTopicOffsets(topic)
  const highs = {}
  for (const o of offsets) {
    highs[o.partition] = Number(o.high)
    assert.strictEqual(o.low, '0')
  }
  assert.deepStrictEqual(highs, { 0: N / PARTITIONS, 1: N / PARTITIONS })
  await admin.disconnect()

  // ---- read back through raw Fetch
  const cluster = new Cluster({
    logger: createLogger({ level: LEVELS.WARN, logCreator: LoggerConsole }),
    socketFactory: defaultSocketFactory(),
    brokers: [bootstrap],
    clientId: 'ringbroker-e2e-kafkajs-fetch',
    connectionTimeout: 5000,
    requestTimeout: 30000,
    metadataMaxAge: 300000,
    retry: { retries: 5, initialRetryTime: 200 },
    allowAutoTopicCreation: false,
    maxInFlightRequests: null,
    isolationLevel: 0,
  })
  await cluster.connect()
  let checked = 0
  for (let p = 0; p < PARTITIONS; p++) {
    const expected = msgs.filter(m => m.partition === p)
    const got = await fetchAll(cluster, p, highs[p])
    assert.strictEqual(got.length, expected.length, `partition ${p} count`)
    got.forEach((m, j) => {
      const e = expected[j]
      const where = `partition ${p} offset ${m.offset}`
      assert.strictEqual(m.key.toString(), e.key, `${where}: key`)
      assert.strictEqual(m.value.toString(), e.value, `${where}: value`)
      assert.strictEqual(String(m.timestamp), String(e.timestamp), `${where}: timestamp`)
      const h = {}
      for (const [k, v] of Object.entries(m.headers)) h[k] = Buffer.isBuffer(v) ? v.toString() : v
      assert.deepStrictEqual(h, e.headers, `${where}: headers`)
      checked++
    })
  }
  await cluster.disconnect()
  assert.strictEqual(checked, N)
  console.log(`kafkajs_e2e: OK topic=${topic} records=${checked}`)
}

main()
  .then(() => {
    clearTimeout(overall)
    process.exit(0)
  })
  .catch(err => {
    console.error('kafkajs_e2e: FAILED:', err && err.stack ? err.stack : err)
    process.exit(1)
  })
