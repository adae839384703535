import CairnFS
import Foundation
import Synchronization
import Testing

@testable import CairnWAL

/// Frame extents of a scanned log's records.
private func frameEnds(_ frames: [ScannedFrame], segmentBytes: [UInt8]) -> [(start: Int, end: Int)] {
    frames.map { f in
        let start = Int(f.location.offset)
        let len = segmentBytes.withUnsafeBytes { Int(loadLE32($0.baseAddress! + start, 0)) }
        return (start, start + WALFormat.frameBytes(payloadBytes: len))
    }
}

@Suite struct WALFaults {
    /// 31 entries, each synced alone, so the last write batch is exactly the last frame.
    static let count = 31

    @Test func truncationAtEveryOffsetOfTheLastThreeRecords() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: Self.count)
        let seg = segmentPaths(dir)[0]
        let original = readBytes(seg)
        let (_, frames) = try scanAll(dir)
        let extents = frameEnds(frames, segmentBytes: original)
        let work = dir + "-work"
        defer { removeTree(work) }
        let lastEnd = extents[extents.count - 1].end
        var cases = 0
        for cut in extents[extents.count - 3].start..<lastEnd {
            copyTree(dir, work)
            let path = segmentPaths(work)[0]
            writeBytes(path, Array(original[0..<cut]))  // the file ends at `cut`
            let (scan, seen) = try scanAll(work)
            let kept = extents.filter { $0.end <= cut }.count
            if extents.contains(where: { $0.end == cut }) {
                #expect(scan.problem == nil, "cut at record boundary \(cut)")
                #expect(seen.count == kept)
            } else {
                let problem = try #require(scan.problem, "cut at \(cut) must be detected")
                #expect(problem.kind == .tornTail, "cut at \(cut): \(problem)")
                #expect(Int(problem.location.offset) == extents[kept].start)
                #expect(problem.location.recordNumber == kept)
                _ = try WALRepair.truncate(directory: work, at: scan)
                let (after, afterFrames) = try scanAll(work)
                #expect(after.problem == nil)
                #expect(afterFrames.map(\.body) == Array(frames[0..<kept].map(\.body)), "repair keeps exactly the valid prefix")
            }
            cases += 1
        }
        #expect(cases == lastEnd - extents[extents.count - 3].start)
    }

    @Test func zeroFilledTailSectorsAreATornTail() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: Self.count)
        let seg = segmentPaths(dir)[0]
        let original = readBytes(seg)
        let (_, frames) = try scanAll(dir)
        let extents = frameEnds(frames, segmentBytes: original)
        let last = extents[extents.count - 1]
        // Zero the 512-byte sectors holding the last record's second half (the head persisted).
        var bytes = original
        let zeroFrom = ((last.start + 24) / 512) * 512 < last.start ? last.start + 24 : ((last.start + 24) / 512) * 512
        for i in zeroFrom..<((last.end + 511) / 512 * 512) { bytes[i] = 0 }
        writeBytes(seg, bytes)
        let (scan, seen) = try scanAll(dir)
        let problem = try #require(scan.problem)
        #expect(problem.kind == .tornTail, "\(problem)")
        let kept = extents.filter { $0.end <= zeroFrom }.count
        #expect(Int(problem.location.offset) == extents[kept].start)
        #expect(seen.count == kept)
        _ = try WALRepair.truncate(directory: dir, at: scan)
        let (after, afterFrames) = try scanAll(dir)
        #expect(after.problem == nil)
        #expect(afterFrames.count == kept)
    }

    @Test func bitFlipInEachSampledRecordIsClassified() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: Self.count)
        let seg = segmentPaths(dir)[0]
        let original = readBytes(seg)
        let (_, frames) = try scanAll(dir)
        let extents = frameEnds(frames, segmentBytes: original)
        var rng = SystemRandomNumberGenerator()
        var sample = Array(stride(from: 0, to: extents.count, by: 3))
        if sample.last != extents.count - 1 { sample.append(extents.count - 1) }
        let work = dir + "-work"
        defer { removeTree(work) }
        for k in sample {
            let e = extents[k]
            let len = Int(original.withUnsafeBytes { loadLE32($0.baseAddress! + e.start, 0) })
            for _ in 0..<3 {
                copyTree(dir, work)
                var bytes = original
                let byte = Int.random(in: e.start..<(e.start + 24 + len), using: &rng)
                let bit = UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                bytes[byte] ^= bit
                writeBytes(segmentPaths(work)[0], bytes)
                let scan: WALScanResult
                do {
                    scan = try WALScanner(directory: work).scan()
                } catch {
                    // Only the first segment's magic can turn the file into "not a WAL".
                    guard case .notAWAL = error else { Issue.record("record \(k) byte \(byte): \(error)"); continue }
                    #expect(k == 0 && byte >= 24 && byte < 32, "notAWAL only for a flipped magic, got byte \(byte) of record \(k)")
                    continue
                }
                let problem = try #require(scan.problem, "flip of byte \(byte) bit \(bit) in record \(k) undetected")
                #expect(Int(problem.location.offset) == e.start, "record \(k): \(problem)")
                let expectedKind: WALProblem.Kind = k == extents.count - 1 ? .tornTail : .corruption
                #expect(problem.kind == expectedKind, "record \(k) byte \(byte): \(problem)")
                // Cutting at the damage (what repair --truncate-at-corruption does) leaves the prefix.
                if k > 0 {
                    let lost = try WALRepair.indexesAfterDamage(directory: work, scan: scan)
                    let expectedLost = entryIndexes(Array(frames[(k + 1)...]))
                    #expect(Set(expectedLost).isSubset(of: Set(lost)), "lost list names every later entry")
                    _ = try WALRepair.truncate(directory: work, at: scan)
                    let (after, afterFrames) = try scanAll(work)
                    #expect(after.problem == nil)
                    #expect(afterFrames.map(\.body) == Array(frames[0..<k].map(\.body)))
                }
            }
        }
    }

    @Test func deletedMiddleSegmentIsCorruption() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 300, size: 200, segmentSizeBytes: 16 << 10)
        let segs = segmentPaths(dir)
        #expect(segs.count >= 4)
        try FileManager.default.removeItem(atPath: segs[2])
        let (scan, _) = try scanAll(dir)
        let problem = try #require(scan.problem)
        #expect(problem.kind == .corruption)
        #expect(problem.location.segment == (segs[3] as NSString).lastPathComponent)
        #expect(problem.reason.contains("missing"))
    }

    @Test func staleRecordFromAnotherSegmentFailsTheChain() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: 300, size: 200, segmentSizeBytes: 16 << 10)
        let segs = segmentPaths(dir)
        let a = readBytes(segs[1])
        var b = readBytes(segs[2])
        // Frame 5 of segment 1 and frame 5 of segment 2 have the same size; swap one in.
        let (_, frames) = try scanAll(dir)
        let inA = frames.filter { $0.location.segment == (segs[1] as NSString).lastPathComponent }
        let inB = frames.filter { $0.location.segment == (segs[2] as NSString).lastPathComponent }
        let fa = Int(inA[5].location.offset)
        let fb = Int(inB[5].location.offset)
        let n = WALFormat.frameBytes(payloadBytes: 224)
        b.replaceSubrange(fb..<(fb + n), with: a[fa..<(fa + n)])
        writeBytes(segs[2], b)
        let (scan, _) = try scanAll(dir)
        let problem = try #require(scan.problem)
        #expect(problem.kind == .corruption)
        #expect(Int(problem.location.offset) == fb)
        #expect(problem.reason.contains("chain"), "\(problem)")
    }

    @Test func appendedGarbageIsATornTailAndRepairKeepsThePrefix() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        try writeSequentialLog(dir, count: Self.count)
        let seg = segmentPaths(dir)[0]
        let (before, frames) = try scanAll(dir)
        var bytes = readBytes(seg)
        var rng = SystemRandomNumberGenerator()
        let end = Int(before.validEndOffset)
        for i in end..<(end + 200) { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        writeBytes(seg, bytes)
        let (scan, _) = try scanAll(dir)
        let problem = try #require(scan.problem)
        #expect(problem.kind == .tornTail)
        #expect(Int(problem.location.offset) == end)
        let outcome = try WALRepair.truncate(directory: dir, at: scan)
        #expect(outcome.keptCopies.count == 1)
        #expect(readBytes(outcome.keptCopies[0]) == bytes, "the damaged segment is kept byte for byte")
        let (after, afterFrames) = try scanAll(dir)
        #expect(after.problem == nil)
        #expect(afterFrames.map(\.body) == frames.map(\.body))
    }
}

/// A switch tests flip to make the file layer fail.
final class FaultSwitch: Sendable {
    let armed = Mutex(false)
    func arm() { armed.withLock { $0 = true } }
    var isArmed: Bool { armed.withLock { $0 } }
}

@Suite struct WALInjectedFaults {
    private func run(
        _ name: String, inject: (FaultSwitch) -> Syscalls, expectTornRepair: Bool = false,
        segmentSizeBytes: Int = 64 << 10, records: Int = 10, check: (WALError) -> Bool
    ) throws {
        let dir = makeTempDir(name)
        defer { removeTree(dir) }
        let fault = FaultSwitch()
        var config = smallConfig(segmentSizeBytes: segmentSizeBytes)
        config.fileSystem = FileSystem(syscalls: inject(fault))
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        var acknowledged: [UInt64] = []
        for i in 1...UInt64(records) {
            try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 500)))])
            acknowledged.append(i)
        }
        fault.arm()
        var failure: WALError?
        var next = UInt64(records + 1)
        // Keep appending until the fault bites (a cut-time fault needs a full segment).
        for _ in 0..<1000 {
            do {
                try wal.appendAndSync([.entry(WALEntry(term: 1, index: next, data: payload(next, size: 500)))])
                acknowledged.append(next)
                next += 1
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "\(name): the fault never surfaced")
        #expect(check(error), "\(name): \(error)")
        // Stopped: every later append is refused with the same error.
        #expect(throws: error) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: next + 1, data: [1]))]) }
        #expect(wal.stoppedError == error)
        wal.close()
        let (reopened, replay) = try WAL.open(directory: dir, configuration: smallConfig(segmentSizeBytes: segmentSizeBytes), logger: testLogger)
        reopened.close()
        let replayed = replay.entries.map(\.index)
        #expect(Array(replayed.prefix(acknowledged.count)) == acknowledged, "\(name): acknowledged records survive")
        #expect(replayed.count <= acknowledged.count + 1, "at most the failed record (never acknowledged) may be on disk")
        if expectTornRepair { #expect(replay.repairedTornTail != nil) }
    }

    @Test func diskFullOnWriteStopsTheWAL() throws {
        try run("enospc", inject: { fault in
            var s = Syscalls.live
            s.pwrite = { fd, buf, off in fault.isArmed ? -Int(ENOSPC) : Syscalls.live.pwrite(fd, buf, off) }
            return s
        }, check: { if case .stopped(let r) = $0 { return r.contains("disk full") && r.contains("No space left") } else { return false } })
    }

    @Test func failedFdatasyncStopsTheWAL() throws {
        try run("eio", inject: { fault in
            var s = Syscalls.live
            s.fdatasync = { fd in fault.isArmed ? -EIO : Syscalls.live.fdatasync(fd) }
            return s
        }, check: { if case .stopped(let r) = $0 { return r.contains("fdatasync") && r.contains("Input/output error") } else { return false } })
    }

    @Test func tornWriteStopsTheWALAndReopenCutsTheTail() throws {
        try run("torn", inject: { fault in
            var s = Syscalls.live
            s.pwrite = { fd, buf, off in
                guard fault.isArmed else { return Syscalls.live.pwrite(fd, buf, off) }
                // Half the write reaches the file, then the device fails.
                let half = UnsafeRawBufferPointer(rebasing: buf[0..<(buf.count / 2)])
                let n = Syscalls.live.pwrite(fd, half, off)
                return n < 0 ? n : (n < buf.count / 2 ? n : -Int(EIO))
            }
            return s
        }, expectTornRepair: true, check: { if case .stopped = $0 { return true } else { return false } })
    }

    @Test func diskFullWhenPreparingTheNextSegmentStopsTheWAL() throws {
        try run("fallocate", inject: { fault in
            var s = Syscalls.live
            s.fallocate = { fd, off, len in fault.isArmed ? -ENOSPC : Syscalls.live.fallocate(fd, off, len) }
            return s
        }, segmentSizeBytes: 16 << 10, records: 2, check: {
            if case .stopped(let r) = $0 { return r.contains("next segment") && r.contains("No space left") } else { return false }
        })
    }

    @Test func shortWritesAreCompleted() throws {
        let dir = makeTempDir()
        defer { removeTree(dir) }
        var s = Syscalls.live
        s.pwrite = { fd, buf, off in Syscalls.live.pwrite(fd, UnsafeRawBufferPointer(rebasing: buf[0..<min(buf.count, 100)]), off) }
        var config = smallConfig()
        config.fileSystem = FileSystem(syscalls: s)
        let wal = try WAL.create(directory: dir, metadata: testMetadata, configuration: config, logger: testLogger)
        for i in 1...UInt64(20) { try wal.appendAndSync([.entry(WALEntry(term: 1, index: i, data: payload(i, size: 700)))]) }
        wal.close()
        let (w, replay) = try WAL.open(directory: dir, configuration: smallConfig(), logger: testLogger)
        w.close()
        #expect(replay.entries.map(\.index) == Array(1...20))
        #expect(replay.entries[19].data == payload(20, size: 700))
    }
}
