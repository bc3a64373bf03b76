using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>SmoothQuant (SCIENCE.md 2.2): per site s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) (<see cref="SmoothQuantScale"/>),
/// max|X_j| from the calibration statistics of the probe point at the linears' input, max|W_j| over every linear of the site
/// jointly (read from the weights as they are now, so earlier folds count); both maxima are reduced over tie groups (grouped
/// KV heads at v-o). Sites default to the reference's norm sites (qkv, gate-up, fc1). The statistics must be those of the
/// model the pass runs on: after another fold changed X, calibrate again.</summary>
public sealed class SmoothQuantPass : ChannelFoldPass
{
    public const string PassName = "smooth-quant";

    private readonly ActivationRanges _ranges;
    private readonly IReadOnlyDictionary<string, double> _alphas;

    /// <param name="alpha">Migration strength in [0, 1] for every site not in <paramref name="siteAlphas"/>.</param>
    /// <param name="siteAlphas">alpha per site id (<c>block3.qkv</c>), e.g. from an automatic search.</param>
    public SmoothQuantPass(ModelStructure structure, CalibrationStatistics statistics, double alpha = 0.5,
        IReadOnlyDictionary<string, double>? siteAlphas = null, IEnumerable<FoldSiteKind>? kinds = null, InexactPolicy policy = InexactPolicy.Mul)
        : this(structure, ActivationRanges.From(statistics ?? throw new ArgumentNullException(nameof(statistics))), alpha, siteAlphas, kinds, policy)
    {
    }

    /// <param name="ranges">max |x| per channel at the sites' probe points (<see cref="ActivationRanges.From"/>).</param>
    public SmoothQuantPass(ModelStructure structure, ActivationRanges ranges, double alpha = 0.5,
        IReadOnlyDictionary<string, double>? siteAlphas = null, IEnumerable<FoldSiteKind>? kinds = null, InexactPolicy policy = InexactPolicy.Mul)
        : base(PassName, structure, kinds ?? FoldSiteKinds.NormSites, policy)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        CheckAlpha(alpha, "alpha");
        foreach (var (site, a) in siteAlphas ?? new Dictionary<string, double>()) CheckAlpha(a, $"alpha of site '{site}'");
        _ranges = ranges;
        Alpha = alpha;
        _alphas = siteAlphas ?? new Dictionary<string, double>();
    }

    public double Alpha { get; }

    public double AlphaOf(string siteId) => _alphas.TryGetValue(siteId, out double a) ? a : Alpha;

    private static void CheckAlpha(double alpha, string what)
    {
        if (!(alpha is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"{what} must be in [0, 1]");
    }

    protected override double[]? ComputeScale(FoldSite site, out string? skipReason)
    {
        skipReason = null;
        var range = _ranges[site.ProbePoint];
        if (range is null)
        {
            skipReason = $"no calibration statistics at {site.ProbePoint}";
            return null;
        }
        if (range.Length != site.Channels)
        {
            skipReason = $"{site.ProbePoint} has {range.Length} channels, the site {site.Channels}";
            return null;
        }
        var activation = new double[site.GroupCount];
        var weight = new double[site.GroupCount];
        for (int c = 0; c < site.Channels; c++)
        {
            int g = site.Groups is null ? c : site.Groups[c];
            activation[g] = Math.Max(activation[g], range[c]);
        }
        foreach (var slot in site.ConsumerSlots)
        {
            var rows = SmoothQuantScale.InputChannelAbsMax(FoldSlot.Data(slot.Current)!, slot.Axis == FoldAxis.Rows ? WeightLayout.InOut : WeightLayout.OutIn);
            for (int c = 0; c < site.Channels; c++)
            {
                int g = site.Groups is null ? c : site.Groups[c];
                weight[g] = Math.Max(weight[g], rows[c]);
            }
        }
        return SmoothQuantScale.Compute(activation, weight, AlphaOf(site.Id));
    }
}
