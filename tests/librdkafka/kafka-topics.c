/*
 * A stand-in for Kafka's bin/kafka-topics.sh, for librdkafka's test suite.
 *
 * A few librdkafka tests (0045, 0052, 0077) shell out to
 * $KAFKA_PATH/bin/kafka-topics.sh to create, grow or delete a topic.  There
 * is no Kafka distribution here, so scripts/librdkafka-suite.sh builds this
 * program against the librdkafka it just built and installs it as
 * $KAFKA_PATH/bin/kafka-topics.sh.  It does the same thing through the Admin
 * API (CreateTopics, CreatePartitions, DeleteTopics), so the broker under
 * test serves these requests too.
 *
 * Understood: --bootstrap-server B (or env BROKERS), --create, --alter,
 * --delete, --topic T, --partitions N, --replication-factor R,
 * --config k=v (repeatable).  Exit status 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdkafka.h"

#define MAX_CONFIGS 32

static void die(const char *what, const char *msg) {
        fprintf(stderr, "kafka-topics (librdkafka shim): %s: %s\n", what, msg);
        exit(1);
}

int main(int argc, char **argv) {
        const char *bootstrap = getenv("BROKERS");
        const char *topic = NULL, *op = NULL;
        int partitions = -1, rf = -1, nconf = 0, i;
        char *configs[MAX_CONFIGS];
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        rd_kafka_queue_t *q;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_event_t *ev;
        const rd_kafka_topic_result_t **res = NULL;
        size_t nres = 0;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(a, "--create") || !strcmp(a, "--alter") ||
                    !strcmp(a, "--delete"))
                        op = a + 2;
                else if (!strcmp(a, "--bootstrap-server") && v)
                        bootstrap = argv[++i];
                else if (!strcmp(a, "--zookeeper") && v)
                        i++; /* no ZooKeeper here: use the bootstrap */
                else if (!strcmp(a, "--topic") && v)
                        topic = argv[++i];
                else if (!strcmp(a, "--partitions") && v)
                        partitions = atoi(argv[++i]);
                else if (!strcmp(a, "--replication-factor") && v)
                        rf = atoi(argv[++i]);
                else if (!strcmp(a, "--config") && v) {
                        if (nconf == MAX_CONFIGS)
                                die("--config", "too many");
                        configs[nconf++] = argv[++i];
                } else
                        die("unknown argument", a);
        }
        if (!op || !topic || !bootstrap)
                die("usage",
                    "--bootstrap-server B --create|--alter|--delete "
                    "--topic T [--partitions N] [--replication-factor R] "
                    "[--config k=v]...");

        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK)
                die("bootstrap.servers", errstr);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk)
                die("rd_kafka_new", errstr);
        q    = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY);
        rd_kafka_AdminOptions_set_operation_timeout(opts, 30000, errstr,
                                                    sizeof(errstr));
        rd_kafka_AdminOptions_set_request_timeout(opts, 30000, errstr,
                                                  sizeof(errstr));

        if (!strcmp(op, "create")) {
                rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
                    topic, partitions, rf, errstr, sizeof(errstr));
                if (!nt)
                        die("NewTopic", errstr);
                for (i = 0; i < nconf; i++) {
                        char *eq = strchr(configs[i], '=');
                        if (!eq)
                                die("--config needs k=v", configs[i]);
                        *eq = '\0';
                        if (rd_kafka_NewTopic_set_config(nt, configs[i],
                                                         eq + 1))
                                die("set_config", configs[i]);
                }
                rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
                ev = rd_kafka_queue_poll(q, 60000);
                if (!ev || rd_kafka_event_error(ev))
                        die("CreateTopics", ev ? rd_kafka_event_error_string(ev)
                                               : "timed out");
                res = rd_kafka_CreateTopics_result_topics(
                    rd_kafka_event_CreateTopics_result(ev), &nres);
                rd_kafka_NewTopic_destroy(nt);
        } else if (!strcmp(op, "alter")) {
                rd_kafka_NewPartitions_t *np;
                if (partitions < 1)
                        die("--alter", "only --partitions N is supported");
                np = rd_kafka_NewPartitions_new(topic, partitions, errstr,
                                                sizeof(errstr));
                if (!np)
                        die("NewPartitions", errstr);
                rd_kafka_CreatePartitions(rk, &np, 1, opts, q);
                ev = rd_kafka_queue_poll(q, 60000);
                if (!ev || rd_kafka_event_error(ev))
                        die("CreatePartitions",
                            ev ? rd_kafka_event_error_string(ev) : "timed out");
                res = rd_kafka_CreatePartitions_result_topics(
                    rd_kafka_event_CreatePartitions_result(ev), &nres);
                rd_kafka_NewPartitions_destroy(np);
        } else {
                rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
                rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
                ev = rd_kafka_queue_poll(q, 60000);
                if (!ev || rd_kafka_event_error(ev))
                        die("DeleteTopics", ev ? rd_kafka_event_error_string(ev)
                                               : "timed out");
                res = rd_kafka_DeleteTopics_result_topics(
                    rd_kafka_event_DeleteTopics_result(ev), &nres);
                rd_kafka_DeleteTopic_destroy(dt);
        }

        for (i = 0; i < (int)nres; i++)
                if (rd_kafka_topic_result_error(res[i]))
                        die(rd_kafka_topic_result_name(res[i]),
                            rd_kafka_topic_result_error_string(res[i]));
        printf("%s topic \"%s\".\n", op, topic);

        rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return 0;
}
