using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Optimum merged decoders (#7 item 6): when the recognized graph is a branch of an If (the decoder with past on
/// <c>use_cache_branch</c>, the decoder without past otherwise), every branch is recognized and their roles are put side by
/// side: block i of each, and per role whether the branches read one shared (outer-scope) initializer, so later edits apply
/// to both, or copies of their own.</summary>
public static class MergedBranchRecognizer
{
    public static RecognitionResult Attach(RecognitionResult result, ModelFolderFacts? folder)
    {
        if (result.Structure is not { } s || s.Graph.ParentNode is not { } ifNode || !ifNode.Is("If")) return result;
        var branches = new List<BranchRole>();
        var missed = new List<string>();
        foreach (var attr in ifNode.Attributes)
            foreach (var g in attr.Graphs)
            {
                var structure = g == s.Graph ? s : StructureRecognizer.RecognizeGraph(g, $"{ifNode.Describe()} attribute '{attr.Name}'", folder).Structure;
                if (structure is null) missed.Add(attr.Name);
                else branches.Add(new BranchRole(attr.Name, structure));
            }
        if (branches.Count < 2)
        {
            var hint = new MergedBranchesIncompleteHint(ifNode, branches.Select(b => b.Attribute).ToList(), missed);
            return result with { Structure = s with { Hints = [.. s.Hints, hint] } };
        }
        // Every role's initializer per branch, keyed by (block, role path).
        var perBranch = branches.Select(b => SharedInitializerFinder.Uses(b.Structure.Blocks, b.Structure.Embedding, b.Structure.FinalNorm, b.Structure.LmHead)
            .GroupBy(u => u.Use).ToDictionary(g => g.Key, g => g.First().Initializer)).ToList();
        var roles = perBranch.SelectMany(d => d.Keys).Distinct().ToList();
        var weights = roles.Select(r => new BranchWeight(r, perBranch.Select(d => d.GetValueOrDefault(r)).ToList())).ToList();
        int blockCount = branches.Max(b => b.Structure.Blocks.Count);
        var blocks = Enumerable.Range(0, blockCount).Select(i => new BranchBlock(i,
            branches.Select(b => i < b.Structure.Blocks.Count ? b.Structure.Blocks[i].Kind : (BlockKind?)null).ToList(),
            weights.Count(w => w.Role.Block == i && w.Shared), weights.Count(w => w.Role.Block == i && !w.Shared))).ToList();
        var merged = new MergedBranchesRole(ifNode, ifNode.Input(0), branches, blocks, weights);
        return result with { Structure = s with { Branches = merged, Hints = [.. s.Hints, new MergedDecoderHint(merged)] } };
    }
}
