using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>An attention core an exporter emits as a custom-domain op: which inputs are Q, K, V and the mask, and
/// which attributes (if any) carry the head counts. Q/K/V are traced to their projections like any attention input;
/// when the op carries no head counts the geometry comes from the Reshape shapes on the query path.</summary>
public sealed record CustomAttentionOp(string Name, Func<Node, bool> Matches, int Query, int Key, int Value, int? Mask,
    string? HeadsAttribute = null, string? KvHeadsAttribute = null);

public static class CustomAttentionOps
{
    public static IReadOnlyList<CustomAttentionOp> All { get; } =
    [
        // torch.export-based exporters (experimental-experiment, dynamo) keep F.scaled_dot_product_attention as a
        // local function call in an 'aten' domain: (query, key, value, attn_mask), no head attributes.
        new("aten::scaled_dot_product_attention", n => !n.IsDefaultDomain && n.OpType.Contains("scaled_dot_product_attention", StringComparison.Ordinal),
            Query: 0, Key: 1, Value: 2, Mask: 3),
        // mobius' sparse attention with a shared top-k index (GLM-5 DSA): (query, key, value, _, _, indices).
        new("pkg.nxrt::IndexShare", n => n.Domain == "pkg.nxrt" && n.OpType == "IndexShare",
            Query: 0, Key: 1, Value: 2, Mask: null, HeadsAttribute: "num_heads", KvHeadsAttribute: "kv_num_heads"),
    ];

    public static CustomAttentionOp? For(Node node) => node.IsDefaultDomain ? null : All.FirstOrDefault(o => o.Matches(node));
}
