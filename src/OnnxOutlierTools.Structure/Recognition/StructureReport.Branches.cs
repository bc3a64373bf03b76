using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Merged decoders in the layers JSON (<c>branches</c>, additive; the blocks listed are those of the branch the
/// structure was taken from, <c>nestedIn</c> names it) and the table.</summary>
public static partial class StructureReport
{
    /// <summary>The If, its condition, each branch (attribute, graph, block count, whether it has past), block i of every
    /// branch with its kinds and shared/separate weight counts, and each role's initializer per branch.</summary>
    public sealed record BranchesJson(NodeJson If, string? Condition, IReadOnlyList<BranchJson> Branches, bool SameLayout, int SharedWeights,
        int SeparateWeights, IReadOnlyList<BranchBlockJson> Blocks, IReadOnlyList<BranchWeightJson> Weights);

    public sealed record BranchJson(string Attribute, string? Graph, int BlockCount, bool HasPast, string? Architecture);

    public sealed record BranchBlockJson(int Index, IReadOnlyList<string?> Kinds, int SharedWeights, int SeparateWeights);

    /// <summary>A role (<c>block</c> null for model-level roles, <c>role</c> its path as in <c>sharedInitializers</c>), its initializer in each
    /// branch (branch order, null where a branch lacks it), and <c>shared</c>: one tensor all branches read.</summary>
    public sealed record BranchWeightJson(int? Block, string Role, IReadOnlyList<string?> Initializers, bool Shared);

    private static BranchesJson? BranchesOf(MergedBranchesRole? m) => m is null ? null : new(NodeOf(m.If), m.Condition?.Name,
        m.Branches.Select(b => new BranchJson(b.Attribute, b.Structure.Graph.Name, b.Structure.Blocks.Count, b.HasCache, b.Structure.Architecture.Name())).ToList(),
        m.SameLayout, m.Weights.Count(w => w.Shared), m.Weights.Count(w => !w.Shared),
        m.Blocks.Select(b => new BranchBlockJson(b.Index, b.Kinds.Select(k => k is { } kind ? KindName(kind) : null).ToList(), b.SharedWeights, b.SeparateWeights)).ToList(),
        m.Weights.Select(w => new BranchWeightJson(w.Role.Block, w.Role.Role, w.Initializers.Select(i => i?.Name).ToList(), w.Shared)).ToList());

    private static void AppendBranches(EscapedLines lines, MergedBranchesRole m)
    {
        lines.Add($"merged branches ({m.If.Describe()} on {m.Condition?.Name ?? "-"}): {string.Join(" | ", m.Branches.Select(b => $"{b.Attribute} '{b.Structure.Graph.Name}' {b.Structure.Blocks.Count} blocks{(b.HasCache ? " with past" : "")}"))}");
        foreach (var b in m.Blocks)
            lines.Add($"  block {b.Index,-4} {string.Join(" | ", b.Kinds.Select(k => k is { } kind ? KindName(kind) : "-"))}: {b.SharedWeights} weights shared{(b.SeparateWeights > 0 ? $", {b.SeparateWeights} separate" : "")}");
        var model = m.Weights.Where(w => w.Role.Block is null).ToList();
        if (model.Count > 0) lines.Add($"  model-level  {string.Join(", ", model.Select(w => $"{w.Role.Role} {(w.Shared ? "shared" : "separate")}"))}");
        foreach (var w in m.Weights.Where(w => !w.Shared))
            lines.Add($"  separate     {w.Role}: {string.Join(" | ", w.Initializers.Select(i => i?.Name ?? "-"))}");
    }
}
