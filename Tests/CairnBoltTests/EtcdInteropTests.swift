import CairnBolt
import Foundation
import XCTest

/// CairnBolt against the real etcd 3.4: it reads what `etcdctl snapshot save` writes, and
/// `etcdctl snapshot status` / `snapshot restore` + etcd accept what it writes.
final class EtcdInteropTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: EtcdTools.etcd) else {
            throw NSError(domain: "etcd", code: 1, userInfo: [NSLocalizedDescriptionKey: "etcd 3.4 is not installed at /usr/bin/etcd"])
        }
        dir = NSTemporaryDirectory() + "cairn-bolt-etcd-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes a data set with history, a lease, a compaction and a large value; returns the
    /// member (still running) and the path of its snapshot.
    func etcdWithSnapshot() throws -> (EtcdMember, String) {
        let etcd = try EtcdMember(dataDir: dir + "/etcd")
        for i in 1...3 {
            XCTAssertEqual(try etcd.ctl(["put", "a", "v\(i)"]).status, 0)
            XCTAssertEqual(try etcd.ctl(["put", "b", "w\(i)"]).status, 0)
        }
        let lease = try etcd.ctl(["lease", "grant", "600"]).out.split(separator: " ")[1]
        XCTAssertEqual(try etcd.ctl(["put", "--lease=\(lease)", "leased", "x"]).status, 0)
        XCTAssertEqual(try etcd.ctl(["put", "big", String(repeating: "0123456789", count: 1000)]).status, 0)
        XCTAssertEqual(try etcd.ctl(["del", "a"]).status, 0)
        XCTAssertEqual(try etcd.ctl(["compact", "3"]).status, 0)
        let path = dir + "/etcd.snap"
        let save = try etcd.ctl(["snapshot", "save", path])
        XCTAssertEqual(save.status, 0, save.err)
        return (etcd, path)
    }

    func etcdctlStatus(_ path: String) throws -> [String: Int] {
        let r = try EtcdTools.run(EtcdTools.etcdctl, ["snapshot", "status", path, "-w", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        return (try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Int]) ?? [:]
    }

    func testReadsEtcdSnapshotAsEtcdctlDoes() throws {
        let (etcd, path) = try etcdWithSnapshot()
        etcd.stop()
        let reader = try EtcdSnapshot.open(path: path)
        XCTAssertEqual(try reader.bucketNames().map { String(decoding: $0, as: UTF8.self) }, EtcdSnapshot.bucketNames)
        let status = try EtcdSnapshot.status(reader)
        let theirs = try etcdctlStatus(path)
        XCTAssertEqual(Int(status.hash), theirs["hash"])
        XCTAssertEqual(Int(status.revision), theirs["revision"])
        XCTAssertEqual(status.totalKeys, theirs["totalKey"])
        XCTAssertEqual(status.totalSizeBytes, theirs["totalSize"])
        // Puts at 2...9 (a, b three times each, leased, big), the delete of "a" at 10; compacting
        // at 3 keeps what a read at revision 3 sees (a@2, b@3) and everything after.
        var revisions: [String] = []
        try reader.forEach(bucket: [Array("key".utf8)]) { k, _, _ in
            var main: UInt64 = 0
            for i in 0..<8 { main = main << 8 | UInt64(k[i]) }
            revisions.append("\(main)" + (k.count == 18 ? "t" : ""))
        }
        XCTAssertEqual(revisions, ["2", "3", "4", "5", "6", "7", "8", "9", "10t"])
    }

    func testEtcdAcceptsRewrittenSnapshot() throws {
        let (etcd, path) = try etcdWithSnapshot()
        let before = try etcd.ctl(["get", "", "--prefix", "-w", "json"]).out
        let beforeAt5 = try etcd.ctl(["get", "", "--prefix", "--rev=5", "-w", "json"]).out
        etcd.stop()
        // Copy every bucket of etcd's snapshot into a file of CairnBolt's own making.
        let reader = try EtcdSnapshot.open(path: path)
        let copy = dir + "/copy.snap"
        let w = try BoltWriter(path: copy)
        for name in try reader.bucketNames() {
            try w.beginBucket(name)
            try reader.forEach(bucket: [name]) { k, v, _ in try w.put(k, v) }
            try w.endBucket()
        }
        let size = try w.finish()
        let sha = try EtcdSnapshot.sha256(path: copy, count: size)
        let fh = FileHandle(forWritingAtPath: copy)!
        fh.seekToEndOfFile()
        fh.write(Data(sha))
        fh.closeFile()

        let ours = try EtcdSnapshot.status(try EtcdSnapshot.open(path: copy))
        let theirs = try etcdctlStatus(copy)
        let original = try etcdctlStatus(path)
        XCTAssertEqual(theirs["hash"], original["hash"])
        XCTAssertEqual(theirs["revision"], original["revision"])
        XCTAssertEqual(theirs["totalKey"], original["totalKey"])
        XCTAssertEqual(theirs["totalSize"], ours.totalSizeBytes)

        let peer = "http://127.0.0.1:\(EtcdTools.freePort())"
        let restore = try EtcdTools.run(
            EtcdTools.etcdctl,
            ["snapshot", "restore", copy, "--data-dir", dir + "/restored", "--name", "r", "--initial-cluster", "r=\(peer)", "--initial-advertise-peer-urls", peer])
        XCTAssertEqual(restore.status, 0, restore.err)
        let restored = try EtcdMember(dataDir: dir + "/restored", name: "r", peerURL: peer)
        defer { restored.stop() }
        XCTAssertEqual(kvs(try restored.ctl(["get", "", "--prefix", "-w", "json"]).out), kvs(before))
        XCTAssertEqual(kvs(try restored.ctl(["get", "", "--prefix", "--rev=5", "-w", "json"]).out), kvs(beforeAt5))
        XCTAssertFalse(kvs(before).isEmpty)
        let leases = try restored.ctl(["lease", "list"]).out
        XCTAssertTrue(leases.contains("found 1 leases"), leases)
    }
}

/// The `kvs` of an etcdctl JSON get answer, re-serialized for comparison (headers differ).
func kvs(_ json: String) -> String {
    guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
        let kvs = obj["kvs"], let data = try? JSONSerialization.data(withJSONObject: kvs, options: [.sortedKeys])
    else { return "" }
    return String(decoding: data, as: UTF8.self)
}
