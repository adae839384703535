"""Normalizer for compat transcripts.

Replaces only what legitimately differs between two runs of the same script
against two fresh single-member clusters:

- member, cluster and lease IDs, in hex and decimal, each value mapped
  consistently to <ID1>, <ID2>, ... in order of first appearance, and only
  where the output format says the number is an ID (a JSON/fields key such as
  "member_id", "ID", "lease", "leader"; "lease <hex> granted"; the ID column
  of member list and endpoint status; the hex lines of lease list). The value
  0 ("no lease", empty nested headers) is never replaced;
- raft term and raft (applied) index (non-zero ones);
- db sizes ("dbSize", "dbSizeInUse", "20 kB");
- the server version string in endpoint status;
- the endpoints (client/peer URLs and host:port, the data dir), given as
  exact strings by the runner;
- timings: "took = 1.2ms", "took":"...", the TOOK column, the "ts" and the
  random "target" of the client's zap log lines;
- a lease's remaining TTL, only when it lies within SLACK seconds below the
  granted TTL printed next to it (a remaining TTL out of that range is kept,
  so it shows as a difference);
- the client's own name: "etcdctl" or "cairnctl" as a whole word becomes
  <CTL> (usage text, "Run 'etcdctl --help'", the version line), and the
  client version after "<CTL> version: " (each program names and numbers
  itself; nothing else in a transcript contains these words).

The keys attached to a lease (lease timetolive --keys) are sorted: etcd
lists them in Go map order, which changes from run to run.

Table borders are reduced to one canonical line per column count and cell
padding is trimmed (padding only follows the width of the content, which
normalization changes).

Everything else -- revisions, keys, values, counts, versions of keys, error
messages, exit codes -- is left exactly as printed.
"""

import re

SLACK = 30  # seconds a lease's remaining TTL may lag its granted TTL

DURATION = r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|µs|us|ms|s|m|h))+"
SIZE = r"[0-9]+(?:\.[0-9]+)? (?:B|kB|MB|GB|TB)"

# JSON keys (etcdctl -w json) whose non-zero numeric value is an ID.
JSON_ID_KEYS = ("cluster_id", "member_id", "ID", "id", "leader", "lease")
# -w fields keys whose non-zero numeric value is an ID.
FIELD_ID_KEYS = ("ClusterID", "MemberID", "ID", "Leader", "Lease")

JSON_ID_RE = re.compile(r'"(%s)":([0-9]+)' % "|".join(JSON_ID_KEYS))
FIELD_ID_RE = re.compile(r'^"(%s)" : ([0-9]+)$' % "|".join(FIELD_ID_KEYS), re.M)
JSON_RAFT_RE = re.compile(r'"(raft_term|raftTerm|raftIndex|raftAppliedIndex)":([0-9]+)')
FIELD_RAFT_RE = re.compile(r'^"(RaftTerm|RaftIndex|RaftAppliedIndex)" : ([0-9]+)$', re.M)
JSON_SIZE_RE = re.compile(r'"(dbSize|dbSizeInUse)":[0-9]+')
FIELD_SIZE_RE = re.compile(r'^"(DBSize|DBSizeInUse)" : [0-9]+$', re.M)
VERSION = r"[0-9]+\.[0-9]+\.[0-9]+[^\s\",]*"
JSON_VERSION_RE = re.compile(r'("version":)"%s"' % VERSION)
FIELD_VERSION_RE = re.compile(r'^("Version" : )"%s"$' % VERSION, re.M)  # quoted = server version; a key's version is a bare int
TOOK_RE = re.compile(r"(took = )%s" % DURATION)
JSON_TOOK_RE = re.compile(r'("took":)"%s"' % DURATION)
FIELD_TOOK_RE = re.compile(r'^("Took" : )%s$' % DURATION, re.M)
ZAP_TS_RE = re.compile(r'("ts":)"[^"]*"')
ZAP_TARGET_RE = re.compile(r'("target":)"endpoint://client-[0-9a-f-]+/[^"]*"')
PROGRAM_RE = re.compile(r"\b(?:etcdctl|cairnctl)\b")
CLIENT_VERSION_RE = re.compile(r"^(<CTL> version: )%s$" % VERSION, re.M)
LEASE_TEXT_RE = re.compile(r"\blease ([0-9a-f]+) (granted|keepalived|revoked|already expired|expired)")
REMAINING_RE = re.compile(r"TTL\(([0-9]+)s\), remaining\(([0-9]+)s\)")
JSON_TTL_RE = re.compile(r'"ttl":(-?[0-9]+),"granted-ttl":([0-9]+)')
FIELD_TTL_RE = re.compile(r'^"TTL" : (-?[0-9]+)\n"GrantedTTL" : ([0-9]+)$', re.M)
HEX_RE = re.compile(r"^[0-9a-f]{1,16}$")
TABLE_BORDER_RE = re.compile(r"^\+(-+\+)+$")
TABLE_ROW_RE = re.compile(r"^\|.*\|$")

# endpoint status, simple format: the columns etcdctl prints, in order.
STATUS_COLUMNS = ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                  "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]
# member list, simple format.
MEMBER_COLUMNS = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]


def has_command(args, *words):
    """Whether args (flags and all) run the command `words`, e.g. ("endpoint", "status")."""
    n = len(words)
    return any(tuple(args[i:i + n]) == words for i in range(len(args) - n + 1))


class Normalizer:
    def __init__(self, exact=None, literal_ids=()):
        """exact: {literal string: placeholder}, e.g. the endpoint URLs.
        literal_ids: ID values the script itself spells out (e.g. an unknown
        lease 1234abcd); they are never replaced, so a wrong echo of them shows."""
        self.exact = sorted((exact or {}).items(), key=lambda kv: -len(kv[0]))
        self.literal_ids = set(literal_ids)
        self.ids = {}

    # -- IDs ---------------------------------------------------------------
    def id_placeholder(self, value):
        if value == 0 or value in self.literal_ids:
            return None
        if value not in self.ids:
            self.ids[value] = "<ID%d>" % (len(self.ids) + 1)
        return self.ids[value]

    def dec_id(self, text):
        return self.id_placeholder(int(text)) or text

    def hex_id(self, text):
        if not HEX_RE.match(text):
            return text
        return self.id_placeholder(int(text, 16)) or text

    # -- tables ------------------------------------------------------------
    def table_cell(self, header, cell):
        if cell == "":
            return cell
        if header == "ID":
            return self.hex_id(cell)
        if header == "VERSION" and re.fullmatch(VERSION, cell):
            return "<VERSION>"
        if header == "DB SIZE" and re.fullmatch(SIZE, cell):
            return "<SIZE>"
        if header in ("RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX") and re.fullmatch(r"[1-9][0-9]*", cell):
            return "<%s>" % header.replace(" ", "_")
        if header == "TOOK" and re.fullmatch(DURATION, cell):
            return "<DURATION>"
        return cell

    def tables(self, lines):
        out, header = [], None
        for line in lines:
            if TABLE_BORDER_RE.match(line):
                out.append("+" + "-+" * line.count("-+"))
                continue
            if TABLE_ROW_RE.match(line):
                cells = [c.strip() for c in line[1:-1].split("|")]
                if header is None:
                    header = cells
                elif len(cells) == len(header):
                    cells = [self.table_cell(h, c) for h, c in zip(header, cells)]
                out.append("| " + " | ".join(cells) + " |")
                continue
            header = None
            out.append(line)
        return out

    # -- simple (comma separated) formats of status and member list ------
    def comma_row(self, columns, line):
        cells = line.split(", ")
        if len(cells) != len(columns):
            return line
        return ", ".join(self.table_cell(h, c) for h, c in zip(columns, cells))

    # -- the whole output of one step ---------------------------------------
    def normalize(self, args, text):
        """args: the etcdctl arguments of the step (list of str), text: its stdout or stderr."""
        for literal, placeholder in self.exact:
            text = text.replace(literal, placeholder)
        # the client's name and version
        text = PROGRAM_RE.sub("<CTL>", text)
        text = CLIENT_VERSION_RE.sub(r"\1<VERSION>", text)
        # client log lines
        text = ZAP_TS_RE.sub(r'\1"<TS>"', text)
        text = ZAP_TARGET_RE.sub(r'\1"<TARGET>"', text)
        # remaining TTL (before IDs: the patterns do not overlap, order is for clarity)
        text = REMAINING_RE.sub(self._remaining_text, text)
        text = JSON_TTL_RE.sub(lambda m: self._remaining(m, '"ttl":%s,"granted-ttl":%s'), text)
        text = FIELD_TTL_RE.sub(lambda m: self._remaining(m, '"TTL" : %s\n"GrantedTTL" : %s'), text)
        # IDs
        text = JSON_ID_RE.sub(lambda m: '"%s":%s' % (m.group(1), self.dec_id(m.group(2))), text)
        text = FIELD_ID_RE.sub(lambda m: '"%s" : %s' % (m.group(1), self.dec_id(m.group(2))), text)
        text = LEASE_TEXT_RE.sub(lambda m: "lease %s %s" % (self.hex_id(m.group(1)), m.group(2)), text)
        # raft term / index, sizes, versions, timings
        text = JSON_RAFT_RE.sub(lambda m: '"%s":%s' % (m.group(1), self._nonzero(m.group(2), "<RAFT>")), text)
        text = FIELD_RAFT_RE.sub(lambda m: '"%s" : %s' % (m.group(1), self._nonzero(m.group(2), "<RAFT>")), text)
        text = JSON_SIZE_RE.sub(r'"\1":<SIZE>', text)
        text = FIELD_SIZE_RE.sub(r'"\1" : <SIZE>', text)
        text = TOOK_RE.sub(r"\1<DURATION>", text)
        text = JSON_TOOK_RE.sub(r'\1"<DURATION>"', text)
        text = FIELD_TOOK_RE.sub(r"\1<DURATION>", text)
        is_status = has_command(args, "endpoint", "status")
        if is_status:
            text = JSON_VERSION_RE.sub(r'\1"<VERSION>"', text)
            text = FIELD_VERSION_RE.sub(r'\1"<VERSION>"', text)
        if has_command(args, "lease", "timetolive"):
            text = self._sort_lease_keys(text)
        lines = text.split("\n")
        if is_status:
            lines = [self.comma_row(STATUS_COLUMNS, l) for l in lines]
        if has_command(args, "member", "list"):
            lines = [self.comma_row(MEMBER_COLUMNS, l) for l in lines]
        if has_command(args, "lease", "list"):
            lines = self._lease_list(lines)
        lines = self.tables(lines)
        return "\n".join(lines)

    @staticmethod
    def _sort_lease_keys(text):
        text = re.sub(r"attached keys\(\[([^\]]*)\]\)",
                      lambda m: "attached keys([%s])" % " ".join(sorted(m.group(1).split(" "))), text)
        text = re.sub(r'"keys":\[([^\]]*)\]',
                      lambda m: '"keys":[%s]' % ",".join(sorted(m.group(1).split(","))), text)
        # -w fields: a run of '"Key" : ...' lines
        return re.sub(r'(?:^"Key" : .*$\n?)+',
                      lambda m: "\n".join(sorted(m.group(0).rstrip("\n").split("\n")))
                      + ("\n" if m.group(0).endswith("\n") else ""), text, flags=re.M)

    def _lease_list(self, lines):
        out, in_list = [], False
        for line in lines:
            if re.fullmatch(r"found [0-9]+ leases", line):
                in_list = True
                out.append(line)
            elif in_list and HEX_RE.match(line):
                out.append(self.hex_id(line))
            else:
                in_list = False
                out.append(line)
        return out

    @staticmethod
    def _nonzero(value, placeholder):
        return value if value == "0" else placeholder

    @staticmethod
    def _in_slack(remaining, granted):
        return granted - SLACK <= remaining <= granted and remaining >= 0

    def _remaining_text(self, m):
        granted, remaining = int(m.group(1)), int(m.group(2))
        if self._in_slack(remaining, granted):
            return "TTL(%ss), remaining(<REMAINING>)" % m.group(1)
        return m.group(0)

    def _remaining(self, m, fmt):
        remaining, granted = int(m.group(1)), int(m.group(2))
        if self._in_slack(remaining, granted):
            return fmt % ("<REMAINING>", m.group(2))
        return m.group(0)
