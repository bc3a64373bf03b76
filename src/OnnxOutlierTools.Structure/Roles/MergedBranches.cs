using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>One branch of a merged decoder's If: the attribute holding it (then_branch / else_branch) and its structure.</summary>
public sealed record BranchRole(string Attribute, ModelStructure Structure)
{
    public bool HasCache => Structure.Blocks.Any(b => b.Attention?.Cache?.PastKey is not null);
}

/// <summary>One role's initializer in every branch (branch order; null where the branch lacks the role). <see cref="Shared"/>:
/// every branch reads the same tensor (an outer-scope initializer), so one edit applies to all; otherwise each branch holds
/// its own copy and an edit must be made in each.</summary>
public sealed record BranchWeight(RoleUse Role, IReadOnlyList<Value?> Initializers)
{
    public bool Shared => Initializers.Count > 1 && Initializers.All(i => i is not null && i == Initializers[0]);
}

/// <summary>Block <see cref="Index"/> of every branch: the kind in each (null where a branch has fewer blocks) and how many of
/// its role weights all branches share.</summary>
public sealed record BranchBlock(int Index, IReadOnlyList<BlockKind?> Kinds, int SharedWeights, int SeparateWeights);

/// <summary>An Optimum merged decoder: an If (on <see cref="Condition"/>, <c>use_cache_branch</c>) whose branches are the decoder
/// with and without past. Blocks correspond by index; <see cref="Weights"/> lists each role's initializer per branch.</summary>
public sealed record MergedBranchesRole(Node If, Value? Condition, IReadOnlyList<BranchRole> Branches, IReadOnlyList<BranchBlock> Blocks,
    IReadOnlyList<BranchWeight> Weights)
{
    /// <summary>Whether every branch has the same number of blocks of the same kinds.</summary>
    public bool SameLayout => Blocks.All(b => b.Kinds.All(k => k is not null && k == b.Kinds[0]));
}
