import CairnProto

/// etcd v3's gRPC methods (etcd 3.4's rpc.proto; the Auth service is not listed yet).
public enum EtcdMethods {
    // KV
    public static let range = UnaryMethod<Etcdserverpb_RangeRequest, Etcdserverpb_RangeResponse>("/etcdserverpb.KV/Range")
    public static let put = UnaryMethod<Etcdserverpb_PutRequest, Etcdserverpb_PutResponse>("/etcdserverpb.KV/Put")
    public static let deleteRange = UnaryMethod<Etcdserverpb_DeleteRangeRequest, Etcdserverpb_DeleteRangeResponse>("/etcdserverpb.KV/DeleteRange")
    public static let txn = UnaryMethod<Etcdserverpb_TxnRequest, Etcdserverpb_TxnResponse>("/etcdserverpb.KV/Txn")
    public static let compact = UnaryMethod<Etcdserverpb_CompactionRequest, Etcdserverpb_CompactionResponse>("/etcdserverpb.KV/Compact")
    // Lease
    public static let leaseGrant = UnaryMethod<Etcdserverpb_LeaseGrantRequest, Etcdserverpb_LeaseGrantResponse>("/etcdserverpb.Lease/LeaseGrant")
    public static let leaseRevoke = UnaryMethod<Etcdserverpb_LeaseRevokeRequest, Etcdserverpb_LeaseRevokeResponse>("/etcdserverpb.Lease/LeaseRevoke")
    public static let leaseTimeToLive = UnaryMethod<Etcdserverpb_LeaseTimeToLiveRequest, Etcdserverpb_LeaseTimeToLiveResponse>("/etcdserverpb.Lease/LeaseTimeToLive")
    public static let leaseLeases = UnaryMethod<Etcdserverpb_LeaseLeasesRequest, Etcdserverpb_LeaseLeasesResponse>("/etcdserverpb.Lease/LeaseLeases")
    // Cluster
    public static let memberAdd = UnaryMethod<Etcdserverpb_MemberAddRequest, Etcdserverpb_MemberAddResponse>("/etcdserverpb.Cluster/MemberAdd")
    public static let memberRemove = UnaryMethod<Etcdserverpb_MemberRemoveRequest, Etcdserverpb_MemberRemoveResponse>("/etcdserverpb.Cluster/MemberRemove")
    public static let memberUpdate = UnaryMethod<Etcdserverpb_MemberUpdateRequest, Etcdserverpb_MemberUpdateResponse>("/etcdserverpb.Cluster/MemberUpdate")
    public static let memberList = UnaryMethod<Etcdserverpb_MemberListRequest, Etcdserverpb_MemberListResponse>("/etcdserverpb.Cluster/MemberList")
    public static let memberPromote = UnaryMethod<Etcdserverpb_MemberPromoteRequest, Etcdserverpb_MemberPromoteResponse>("/etcdserverpb.Cluster/MemberPromote")
    // Maintenance
    public static let alarm = UnaryMethod<Etcdserverpb_AlarmRequest, Etcdserverpb_AlarmResponse>("/etcdserverpb.Maintenance/Alarm")
    public static let status = UnaryMethod<Etcdserverpb_StatusRequest, Etcdserverpb_StatusResponse>("/etcdserverpb.Maintenance/Status")
    public static let defragment = UnaryMethod<Etcdserverpb_DefragmentRequest, Etcdserverpb_DefragmentResponse>("/etcdserverpb.Maintenance/Defragment")
    public static let hash = UnaryMethod<Etcdserverpb_HashRequest, Etcdserverpb_HashResponse>("/etcdserverpb.Maintenance/Hash")
    public static let hashKV = UnaryMethod<Etcdserverpb_HashKVRequest, Etcdserverpb_HashKVResponse>("/etcdserverpb.Maintenance/HashKV")
    public static let moveLeader = UnaryMethod<Etcdserverpb_MoveLeaderRequest, Etcdserverpb_MoveLeaderResponse>("/etcdserverpb.Maintenance/MoveLeader")
    // Streaming
    public static let watch = StreamingMethod<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>("/etcdserverpb.Watch/Watch")
    public static let leaseKeepAlive = StreamingMethod<Etcdserverpb_LeaseKeepAliveRequest, Etcdserverpb_LeaseKeepAliveResponse>("/etcdserverpb.Lease/LeaseKeepAlive")
    public static let snapshot = StreamingMethod<Etcdserverpb_SnapshotRequest, Etcdserverpb_SnapshotResponse>("/etcdserverpb.Maintenance/Snapshot")
}
