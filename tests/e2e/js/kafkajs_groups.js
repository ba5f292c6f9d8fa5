#!/usr/bin/env node
// kafkajs consumer-group end-to-end check against a running ringbroker.
//
// Usage: node kafkajs_groups.js HOST:PORT TOPIC GROUP
// Exit code 0 on success, 1 on any mismatch or error, 2 on overall timeout.
//
// 1. create a 3-partition topic and produce N keyed messages;
// 2. consumer.run({eachBatch}) in GROUP consumes everything and commits
//    (consumer.commitOffsets after every batch, autoCommit off);
// 3. admin.listGroups / describeGroups show the group (Stable, 1 member with
//    our clientId) while it runs; admin.fetchOffsets returns the committed
//    offsets == high watermarks;
// 4. after disconnect the group is Empty; a second consumer in the same group
//    gets only the records produced afterwards (resumes at the commits).
'use strict'

const assert = require('assert')
const { Kafka, logLevel } = require('kafkajs')

const bootstrap = process.argv[2] || '127.0.0.1:9092'
const topic = process.argv[3] || `kjsg-${Date.now()}`
const groupId = process.argv[4] || `kjsgroup-${Date.now()}`
const PARTITIONS = 3
const N = 1200
const N2 = 300

const overall = setTimeout(() => {
  console.error('kafkajs_groups: overall timeout (150 s)')
  process.exit(2)
}, 150_000)

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await pred()
    if (last) return last
    await sleep(100)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

async function produce(kafka, from, n) {
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false })
  await producer.connect()
  const expected = new Map() // "p/o" -> value
  for (let i = from; i < from + n; i += 100) {
    const messages = []
    for (let j = i; j < Math.min(i + 100, from + n); j++) {
      messages.push({ key: `key-${j % 37}`, value: `kjs-${j}`, partition: j % PARTITIONS })
    }
    const res = await producer.send({ topic, acks: -1, timeout: 30000, messages })
    for (const r of res) assert.strictEqual(r.errorCode, 0, `produce error ${r.errorCode}`)
    // offsets: each response gives the base offset of the batch per partition
    for (const r of res) {
      const mine = messages.filter(m => m.partition === r.partition)
      mine.forEach((m, k) => expected.set(`${r.partition}/${Number(r.baseOffset) + k}`, m.value))
    }
  }
  await producer.disconnect()
  assert.strictEqual(expected.size, n)
  return expected
}

function runConsumer(kafka, clientTag, sink) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    rebalanceTimeout: 20000,
    allowAutoTopicCreation: false,
  })
  const state = { consumer, joined: null, commits: 0 }
  consumer.on(consumer.events.GROUP_JOIN, e => { state.joined = e.payload })
  consumer.on(consumer.events.COMMIT_OFFSETS, () => { state.commits++ })
  return (async () => {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        if (batch.messages.length === 0) return
        for (const m of batch.messages) {
          sink.push({ p: batch.partition, o: Number(m.offset), v: m.value.toString(), who: clientTag })
          resolveOffset(m.offset)
        }
        // explicit synchronous commit of what this batch processed
        const next = String(Number(batch.lastOffset()) + 1)
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
        await heartbeat()
      },
    })
    return state
  })()
}

function checkExactlyOnce(got, expected, what) {
  const seen = new Map()
  for (const r of got) {
    const k = `${r.p}/${r.o}`
    assert.ok(!seen.has(k), `${what}: duplicate record ${k}`)
    seen.set(k, r.v)
  }
  for (const [k, v] of expected) {
    assert.ok(seen.has(k), `${what}: missing record ${k}`)
    assert.strictEqual(seen.get(k), v, `${what}: value at ${k}`)
  }
  assert.strictEqual(seen.size, expected.size, `${what}: ${seen.size} consumed vs ${expected.size} expected`)
}

async function main() {
  const kafka = new Kafka({
    clientId: 'ringbroker-e2e-kjs-groups',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 200 },
  })
  const admin = kafka.admin()
  await admin.connect()
  assert.strictEqual(await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 30000,
  }), true, 'createTopics returned false')

  const expected = await produce(kafka, 0, N)

  // ---- consume everything in the group, committing as we go
  const got = []
  const st = await runConsumer(kafka, 'c1', got)
  await waitFor(() => got.length >= N, 60_000, `group consumed ${N} (has ${got.length})`)
  await sleep(500)
  checkExactlyOnce(got, expected, 'first consumer')
  assert.ok(st.joined, 'GROUP_JOIN event never fired')
  assert.strictEqual(st.joined.groupId, groupId)
  const assigned = st.joined.memberAssignment[topic]
  assert.deepStrictEqual([...assigned].sort(), [0, 1, 2], `assignment ${JSON.stringify(st.joined.memberAssignment)}`)

  const highs = {}
  for (const o of await admin.fetchTopicOffsets(topic)) highs[o.partition] = o.high
  const committedMatch = async () => {
    const res = await admin.fetchOffsets({ groupId, topics: [topic] })
    assert.strictEqual(res.length, 1)
    assert.strictEqual(res[0].topic, topic)
    const m = {}
    for (const p of res[0].partitions) m[p.partition] = p.offset
    lastCommitted = m
    return JSON.stringify(m) === JSON.stringify(highs) ? m : null
  }
  let lastCommitted = null
  // commitOffsets ran after every batch: committed offsets == high watermarks
  try {
    await waitFor(committedMatch, 10_000, `committed offsets == ${JSON.stringify(highs)}`)
  } catch (e) {
    throw new Error(`${e.message}; fetchOffsets last returned ${JSON.stringify(lastCommitted)}`)
  }
  assert.ok(st.commits > 0, 'no COMMIT_OFFSETS event')

  // ---- admin view of the live group
  const { groups } = await admin.listGroups()
  const mine = groups.find(g => g.groupId === groupId)
  assert.ok(mine, `listGroups lacks ${groupId}: ${JSON.stringify(groups)}`)
  assert.strictEqual(mine.protocolType, 'consumer')

  const desc = await waitFor(async () => {
    const d = await admin.describeGroups([groupId])
    const g = d.groups[0]
    return g && g.state === 'Stable' ? g : null
  }, 15_000, 'describeGroups state Stable')
  assert.strictEqual(desc.groupId, groupId)
  assert.strictEqual(desc.errorCode, 0)
  assert.strictEqual(desc.protocolType, 'consumer')
  assert.ok(['RoundRobinAssigner', 'roundrobin'].includes(desc.protocol), `protocol ${desc.protocol}`)
  assert.strictEqual(desc.members.length, 1)
  const member = desc.members[0]
  assert.strictEqual(member.clientId, 'ringbroker-e2e-kjs-groups')
  assert.strictEqual(member.memberId, st.joined.memberId)
  assert.ok(member.clientHost, 'member without clientHost')
  const { AssignerProtocol } = require('kafkajs')
  const decoded = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)
  assert.deepStrictEqual([...decoded.assignment[topic]].sort(), [0, 1, 2])
  const meta = AssignerProtocol.MemberMetadata.decode(member.memberMetadata)
  assert.deepStrictEqual(meta.topics, [topic])

  await st.consumer.disconnect() // LeaveGroup
  await waitFor(async () => {
    const d = await admin.describeGroups([groupId])
    return d.groups[0].state === 'Empty' && d.groups[0].members.length === 0
  }, 15_000, 'group Empty after disconnect')
  // offsets survive the member leaving
  assert.ok(await committedMatch(), 'committed offsets changed after leave')

  // ---- a new consumer in the group resumes at the committed offsets
  const expected2 = await produce(kafka, N, N2)
  const got2 = []
  const st2 = await runConsumer(kafka, 'c2', got2)
  await waitFor(() => got2.length >= N2, 60_000, `second consumer got ${N2} (has ${got2.length})`)
  await sleep(1000)
  checkExactlyOnce(got2, expected2, 'second consumer (resume at committed offsets)')
  await st2.consumer.disconnect()

  const final = await admin.fetchOffsets({ groupId, topics: [topic] })
  const total = final[0].partitions.reduce((s, p) => s + Number(p.offset), 0)
  assert.strictEqual(total, N + N2, `final committed offsets ${JSON.stringify(final)}`)

  // ---- delete the empty group
  await admin.deleteGroups([groupId])
  const after = await admin.listGroups()
  assert.ok(!after.groups.some(g => g.groupId === groupId), 'group still listed after deleteGroups')
  await admin.disconnect()
  console.log(`kafkajs_groups: OK topic=${topic} group=${groupId} records=${N + N2}`)
}

main()
  .then(() => {
    clearTimeout(overall)
    process.exit(0)
  })
  .catch(err => {
    console.error('kafkajs_groups: FAILED:', err && err.stack ? err.stack : err)
    process.exit(1)
  })
