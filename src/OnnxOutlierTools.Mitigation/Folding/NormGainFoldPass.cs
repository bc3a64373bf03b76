using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>Norm-gain folding (SCIENCE.md 2.1, the seed paper's "reduce the variation of gamma", done exactly): at every norm
/// site s = gamma (the gain becomes 1, the bias beta / gamma) or s = |gamma| (signs stay in the gain), and the rows of q/k/v,
/// gate/up or fc1 take s. Exact when every consumer of the norm output is one of those linears; otherwise the policy
/// decides (an explicit Mul by 1/gamma, or skip). A zero gain entry gets s = 1 (its channel carries only the bias).</summary>
public sealed class NormGainFoldPass : ChannelFoldPass
{
    public const string PassName = "fold-norm-gains";

    /// <param name="structure">The structure recognized on the model the pass runs on.</param>
    /// <param name="keepSigns">s = |gamma| instead of gamma.</param>
    /// <param name="kinds">Norm sites to fold (default qkv, gate-up, fc1; v-o and up-down have no gain and are ignored).</param>
    public NormGainFoldPass(ModelStructure structure, bool keepSigns = false, InexactPolicy policy = InexactPolicy.Mul,
        IEnumerable<FoldSiteKind>? kinds = null)
        : base(PassName, structure, (kinds ?? FoldSiteKinds.NormSites).Intersect(FoldSiteKinds.NormSites), policy)
    {
        KeepSigns = keepSigns;
    }

    public bool KeepSigns { get; }

    protected override double[]? ComputeScale(FoldSite site, out string? skipReason)
    {
        skipReason = null;
        if (site.Norm is not { } norm || site.GainSlot is not { } slot)
        {
            skipReason = site.Norm is null ? "no norm makes the linears' input" : $"the gain '{site.Norm.Gain.Name}' is not a per-channel constant";
            return null;
        }
        var gain = FoldSlot.Data(slot.Current)!;
        var values = new float[gain.ElementCount];
        SmoothQuantScale.ReadSingles(gain, 0, values);
        var s = new double[values.Length];
        for (int c = 0; c < s.Length; c++)
        {
            double g = norm.GainForm == NormGainForm.OnePlusGain ? 1 + (double)values[c] : values[c];
            if (KeepSigns) g = Math.Abs(g);
            s[c] = g == 0 || !double.IsFinite(g) ? 1 : g;
        }
        return s;
    }
}
