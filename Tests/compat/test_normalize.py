#!/usr/bin/env python3
"""Self-test of the compat normalizer: it must map what legitimately differs
between two runs to the same text, and must NOT hide real differences.

    python3 Tests/compat/test_normalize.py
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from normalize import Normalizer  # noqa: E402

URL_A, URL_B = "http://127.0.0.1:40001", "http://127.0.0.1:50002"


def norm(args, *texts, literal_ids=(), url=URL_A):
    """Normalizes texts (one transcript: one Normalizer) and returns the list."""
    n = Normalizer({url: "<CLIENT_URL>", url.split("://")[1]: "<CLIENT_ADDR>"}, literal_ids)
    return [n.normalize(args.split(), t) for t in texts]


class Equal(unittest.TestCase):
    """Legitimate differences vanish."""

    def same(self, args, a, b, **kw):
        # side b runs on other ports: URL_B is its endpoint
        self.assertEqual(norm(args, *a, **kw), norm(args, *b, url=URL_B, **kw))

    def test_header_ids_and_term(self):
        self.same("-w json get foo",
                  ['{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"revision":3,"raft_term":2}}'],
                  ['{"header":{"cluster_id":111,"member_id":222,"revision":3,"raft_term":7}}'])

    def test_lease_hex_and_decimal_are_one_id(self):
        # the same lease in hex (simple) and decimal (json) maps to one placeholder
        a = norm("lease grant 60", "lease 390da216ae289408 granted with TTL(60s)",
                 '{"ID":%d,"TTL":60}' % 0x390da216ae289408)
        self.assertEqual(a, ["lease <ID1> granted with TTL(60s)", '{"ID":<ID1>,"TTL":60}'])

    def test_fields(self):
        self.same("-w fields get foo",
                  ['"ClusterID" : 1\n"MemberID" : 2\n"Revision" : 4\n"RaftTerm" : 2\n"Lease" : 3'],
                  ['"ClusterID" : 7\n"MemberID" : 8\n"Revision" : 4\n"RaftTerm" : 5\n"Lease" : 9'])

    def test_status(self):
        self.same("endpoint status",
                  [URL_A + ", bdae9bbc11dd390d, 3.4.23, 20 kB, true, false, 2, 5, 5, "],
                  [URL_B + ", 8e9e05c52164694d, 3.4.9, 1.2 MB, true, false, 3, 17, 16, "])
        self.same("-w json endpoint status",
                  ['[{"Endpoint":"%s","Status":{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":2},'
                   '"version":"3.4.23","dbSize":20480,"leader":2,"raftIndex":7,"raftTerm":2,"raftAppliedIndex":7,'
                   '"dbSizeInUse":16384}}]' % URL_A],
                  ['[{"Endpoint":"%s","Status":{"header":{"cluster_id":5,"member_id":6,"revision":3,"raft_term":4},'
                   '"version":"3.4.0","dbSize":1,"leader":6,"raftIndex":9,"raftTerm":4,"raftAppliedIndex":8,'
                   '"dbSizeInUse":1}}]' % URL_B])

    def test_status_table_widths(self):
        a = ("+------------------------+------------------+---------+\n"
             "|        ENDPOINT        |        ID        | DB SIZE |\n"
             "+------------------------+------------------+---------+\n"
             "| %s | bdae9bbc11dd390d |   20 kB |\n"
             "+------------------------+------------------+---------+" % URL_A)
        b = ("+------------------------+-----------------+----------+\n"
             "|        ENDPOINT        |       ID        | DB SIZE  |\n"
             "+------------------------+-----------------+----------+\n"
             "| %s | dae9bbc11dd390d |   123 kB |\n"
             "+------------------------+-----------------+----------+" % URL_B)
        self.same("-w table endpoint status", [a], [b])

    def test_member_list(self):
        self.same("member list",
                  ["bdae9bbc11dd390d, started, compat, http://127.0.0.1:1, %s, false" % URL_A],
                  ["8e9e05c52164694d, started, compat, http://127.0.0.1:1, %s, false" % URL_B])

    def test_timings(self):
        self.same("endpoint health",
                  [URL_A + " is healthy: successfully committed proposal: took = 1.076892ms",
                   '[{"endpoint":"%s","health":true,"took":"923.784µs"}]' % URL_A],
                  [URL_B + " is healthy: successfully committed proposal: took = 2s",
                   '[{"endpoint":"%s","health":true,"took":"1m2.5s"}]' % URL_B])

    def test_zap_line(self):
        self.same("get foo",
                  ['{"level":"warn","ts":"2026-11-26T07:07:29.122Z","caller":"x.go:62","target":"endpoint://client-9d59d63d-35e1-4314-a3f7-86b17eb7d4aa/127.0.0.1:1","error":"e"}'],
                  ['{"level":"warn","ts":"2026-11-26T08:00:00.000Z","caller":"x.go:62","target":"endpoint://client-00000000-35e1-4314-a3f7-86b17eb7d4aa/127.0.0.1:1","error":"e"}'])

    def test_client_name_and_version(self):
        self.same("get --bogus",
                  ["USAGE:\n\tetcdctl get [options] <key> [range_end] [flags]", "Run 'etcdctl --help' for usage."],
                  ["USAGE:\n\tcairnctl get [options] <key> [range_end] [flags]", "Run 'cairnctl --help' for usage."])
        self.same("version", ["etcdctl version: 3.4.23\nAPI version: 3.4"], ["cairnctl version: 0.1.0\nAPI version: 3.4"])

    def test_remaining_ttl_counts_down(self):
        self.same("lease timetolive 1",
                  ["lease 1f granted with TTL(600s), remaining(599s)",
                   '{"id":31,"ttl":599,"granted-ttl":600,"keys":null}',
                   '"ID" : 31\n"TTL" : 599\n"GrantedTTL" : 600'],
                  ["lease 2f granted with TTL(600s), remaining(585s)",
                   '{"id":47,"ttl":600,"granted-ttl":600,"keys":null}',
                   '"ID" : 47\n"TTL" : 590\n"GrantedTTL" : 600'])

    def test_lease_keys_order(self):
        self.same("lease timetolive --keys 1f",
                  ["lease 1f granted with TTL(600s), remaining(599s), attached keys([l/1 l/2])",
                   '{"id":31,"ttl":599,"granted-ttl":600,"keys":["bC8x","bC8y"]}',
                   '"TTL" : 599\n"GrantedTTL" : 600\n"Key" : "l/1"\n"Key" : "l/2"\n'],
                  ["lease 1f granted with TTL(600s), remaining(599s), attached keys([l/2 l/1])",
                   '{"id":31,"ttl":599,"granted-ttl":600,"keys":["bC8y","bC8x"]}',
                   '"TTL" : 599\n"GrantedTTL" : 600\n"Key" : "l/2"\n"Key" : "l/1"\n'])

    def test_lease_list(self):
        self.same("lease list", ["found 2 leases\n390da216ae289408\n390da216ae28940d"],
                  ["found 2 leases\n1\n2"])


class Different(unittest.TestCase):
    """Real differences survive normalization."""

    def differ(self, args, a, b, **kw):
        self.assertNotEqual(norm(args, *a, **kw), norm(args, *b, **kw))

    def test_revision(self):
        self.differ("-w json get foo", ['{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":2}}'],
                    ['{"header":{"cluster_id":1,"member_id":2,"revision":4,"raft_term":2}}'])
        self.differ("-w fields get foo", ['"Revision" : 4'], ['"Revision" : 5'])
        self.differ("-w json get foo", ['"mod_revision":4,"version":1'], ['"mod_revision":4,"version":2'])

    def test_keys_values_counts(self):
        self.differ("get foo", ["foo\nbar"], ["foo\nbaz"])
        self.differ("-w json get foo", ['"count":1'], ['"count":2'])
        self.differ("-w json get foo", ['"key":"Zm9v"'], ['"key":"Zm9w"'])
        self.differ("del foo", ["1"], ["0"])

    def test_error_messages(self):
        self.differ("get foo", ["Error: etcdserver: mvcc: required revision has been compacted"],
                    ["Error: etcdserver: mvcc: required revision is a future revision"])
        self.differ("get foo", ['"error":"rpc error: code = OutOfRange desc = x"'],
                    ['"error":"rpc error: code = Unknown desc = x"'])

    def test_id_identity(self):
        # the same ID twice vs two different IDs
        self.differ("-w json get foo", ['{"cluster_id":5,"member_id":5}'], ['{"cluster_id":5,"member_id":6}'])
        # a key's lease must be the lease granted earlier, not another one
        self.differ("x", ["lease 1f granted", '"lease":31'], ["lease 1f granted", '"lease":32'])

    def test_zero_is_not_an_id(self):
        self.differ("-w json get foo", ['"lease":0'], ['"lease":12345'])
        self.differ("-w fields txn", ['"ClusterID" : 0\n"RaftTerm" : 0'], ['"ClusterID" : 0\n"RaftTerm" : 2'])

    def test_literal_id_kept(self):
        # an ID the script spells out is compared as printed
        self.differ("lease timetolive 1234abcd", ["lease 000000001234abcd already expired"],
                    ["lease 000000001234abce already expired"], literal_ids={0x1234abcd})
        self.assertEqual(norm("lease timetolive 1234abcd", "lease 000000001234abcd already expired",
                              literal_ids={0x1234abcd}), ["lease 000000001234abcd already expired"])

    def test_granted_ttl_and_bad_remaining(self):
        self.differ("lease grant 60", ["lease 1 granted with TTL(60s)"], ["lease 1 granted with TTL(61s)"])
        self.differ("lease keep-alive", ["lease 1 keepalived with TTL(600)"], ["lease 1 keepalived with TTL(599)"])
        # remaining above the granted TTL, far below it, or negative while granted: kept
        self.differ("lease timetolive 1", ["TTL(600s), remaining(599s)"], ["TTL(600s), remaining(601s)"])
        self.differ("lease timetolive 1", ['"ttl":599,"granted-ttl":600'], ['"ttl":100,"granted-ttl":600'])
        self.differ("lease timetolive 1", ['"ttl":-1,"granted-ttl":0'], ['"ttl":0,"granted-ttl":0'])

    def test_lease_keys_content(self):
        self.differ("lease timetolive --keys 1f", ["attached keys([l/1 l/2])"], ["attached keys([l/1 l/3])"])
        self.differ("lease timetolive --keys 1f", ['"keys":["bC8x","bC8y"]'], ['"keys":["bC8x"]'])
        self.differ("-w fields lease timetolive --keys 1f", ['"Key" : "l/1"\n"Key" : "l/2"'], ['"Key" : "l/1"'])
        # outside timetolive, order is compared
        self.differ("get --prefix l/", ['"keys":["bC8x","bC8y"]'], ['"keys":["bC8y","bC8x"]'])

    def test_version_and_size_outside_status(self):
        # a key's version (fields) is a bare int, never normalized
        self.differ("-w fields get foo", ['"Version" : 3'], ['"Version" : 4'])
        # "version" outside endpoint status is not the server version
        self.differ("-w json get foo", ['"version":"3.4.23"'], ['"version":"3.4.24"'])
        # a status version that is not a version at all is kept
        self.differ("-w json endpoint status", ['"version":"3.4.23"'], ['"version":"cairn"'])

    def test_status_booleans_and_revision(self):
        self.differ("endpoint status", [URL_A + ", 1, 3.4.23, 20 kB, true, false, 2, 5, 5, "],
                    [URL_A + ", 1, 3.4.23, 20 kB, false, false, 2, 5, 5, "])
        self.differ("member list", ["1, started, compat, p, c, false"], ["1, unstarted, compat, p, c, false"])

    def test_table_cells(self):
        a = "| ENDPOINT | HEALTH |\n| x | true |"
        b = "| ENDPOINT | HEALTH |\n| x | false |"
        self.differ("-w table endpoint health", [a], [b])

    def test_unknown_endpoint(self):
        self.differ("endpoint health", [URL_A + " is healthy"], ["http://127.0.0.1:1 is healthy"])

    def test_api_version_and_other_names_kept(self):
        self.differ("version", ["etcdctl version: 3.4.23\nAPI version: 3.4"], ["etcdctl version: 3.4.23\nAPI version: 3.5"])
        self.differ("get foo", ["etcdctl"], ["etcd"])
        self.differ("get foo", ["xetcdctl"], ["xcairnctl"])

    def test_exit_text_untouched(self):
        self.assertEqual(norm("get foo", "Error: EOF"), ["Error: EOF"])


if __name__ == "__main__":
    unittest.main(verbosity=1)
