using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Quantization.Int4.Awq;

/// <summary>Folds AWQ's per-site scales with the mitigation folding machinery (<see cref="ChannelFoldPass"/>: the consumers'
/// input rows times s through the lazy <see cref="ScaledTensor"/>, the producer (norm gain and bias, v or up output columns)
/// times 1/s), at the same sites SmoothQuant uses. The function is unchanged; only the int4 rounding that follows differs.</summary>
public sealed class AwqFoldPass : ChannelFoldPass
{
    public const string PassName = "awq-fold";

    private readonly IReadOnlyDictionary<string, IReadOnlyList<double>> _scales;

    /// <param name="scales">The scale per group of each site id (<c>block0.qkv</c>), from <see cref="AwqScaleSearch"/>.</param>
    public AwqFoldPass(ModelStructure structure, IReadOnlyDictionary<string, IReadOnlyList<double>> scales, IEnumerable<FoldSiteKind> kinds,
        InexactPolicy policy = InexactPolicy.Skip)
        : base(PassName, structure, kinds, policy)
    {
        ArgumentNullException.ThrowIfNull(scales);
        _scales = scales;
    }

    protected override double[]? ComputeScale(FoldSite site, out string? skipReason)
    {
        skipReason = null;
        if (_scales.TryGetValue(site.Id, out var s)) return s.ToArray();
        skipReason = "no AWQ scale for this site";
        return null;
    }
}
