using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Clipping;

/// <summary>The clamp bound: <see cref="BoundMultiple"/> times the largest |x| the neuron takes on tokens that do not
/// carry the massive activation (<see cref="ClipBound"/>). At 1 (the default) no calibration token other than the
/// massive ones is changed at all; a larger multiple leaves headroom for texts whose ordinary values run higher.</summary>
public sealed record ClipMaSettings
{
    public double BoundMultiple { get; init; } = 1;

    public void Validate()
    {
        if (!(BoundMultiple > 0) || !double.IsFinite(BoundMultiple)) throw new ArgumentException($"{nameof(BoundMultiple)} must be finite and positive, not {BoundMultiple}");
    }
}

/// <summary>One clamped neuron of a down-projection input: x clamped to [-<see cref="Clamp"/>, <see cref="Clamp"/>].</summary>
/// <param name="MaxAbs">Its largest |x| over every calibration token (the massive token's, usually).</param>
/// <param name="OtherTokens">Its largest |x| on the other tokens, or the upper bound <see cref="Source"/> says.</param>
public sealed record ClippedNeuron(int Neuron, double MaxAbs, double OtherTokens, ClipBoundSource Source, double Clamp);

/// <summary>The clamp at one emergence block's down-projection input.</summary>
public sealed record ClipSite(int Block, string Point, FfnRole Ffn, IReadOnlyList<int> MassiveChannels, IReadOnlyList<ClippedNeuron> Neurons);

/// <summary>A massive activation that is not clipped, and why.</summary>
public sealed record ClipRefusal(int Channel, int? Block, string Reason);

/// <summary>Where <c>--clip-ma</c> clamps, decided from the analysis (massive activations with their emergence block,
/// birth point and the down-projection input neurons that write them) and the statistics (the bounds).</summary>
public sealed record ClipMaPlan(IReadOnlyList<ClipSite> Sites, IReadOnlyList<ClipRefusal> Refusals)
{
    public const string Rule = "down-input";

    public static ClipMaPlan Create(ModelStructure structure, AnalysisResult analysis, CalibrationStatistics statistics, ClipMaSettings settings)
    {
        ArgumentNullException.ThrowIfNull(structure);
        ArgumentNullException.ThrowIfNull(analysis);
        ArgumentNullException.ThrowIfNull(statistics);
        settings.Validate();
        if (analysis.MassiveActivations.Count == 0)
            throw new MitigationInputException("the analysis found no massive activation: nothing to clip (--clip-ma)");
        var refusals = new List<ClipRefusal>();
        var byBlock = new Dictionary<int, List<MassiveActivation>>();
        foreach (var ma in analysis.MassiveActivations)
        {
            var birth = ma.Birth;
            string? reason = birth.Place switch
            {
                BirthPlace.Ffn when birth.EmergenceBlock is null || birth.DownInput is null => "its emergence block's down-projection input was not probed",
                BirthPlace.Ffn when birth.Terms.Count == 0 && birth.DownInputArgMax is null => $"the down-projection input neurons that write it are unknown ({birth.TermsSkipped ?? "no terms"})",
                BirthPlace.Ffn => null,
                BirthPlace.Embedding => "it is already in the embedding output: no FFN creates it",
                BirthPlace.Attention => "the attention sublayer writes it, not the FFN",
                BirthPlace.AttentionOrFfn => "a parallel block: the stream cannot tell whether the attention or the FFN writes it",
                _ => "its birth point is unknown",
            };
            if (reason is not null) { refusals.Add(new(ma.Channel, birth.EmergenceBlock, reason)); continue; }
            (byBlock.TryGetValue(birth.EmergenceBlock!.Value, out var list) ? list : byBlock[birth.EmergenceBlock.Value] = []).Add(ma);
        }
        var sites = new List<ClipSite>();
        foreach (var (blockIndex, mas) in byBlock.OrderBy(p => p.Key))
        {
            var block = structure.Blocks.FirstOrDefault(b => b.Index == blockIndex);
            string pointId = mas[0].Birth.DownInput!.Id;
            void RefuseAll(string why) => refusals.AddRange(mas.Select(m => new ClipRefusal(m.Channel, blockIndex, why)));
            if (block?.Ffn is not { } ffn) { RefuseAll("no recognized FFN in the emergence block of this model"); continue; }
            if (!statistics.Points.TryGetValue(pointId, out var stats)) { RefuseAll($"the statistics have no point '{pointId}'"); continue; }
            if (stats.Channels != ffn.Down.InFeatures)
                throw new MitigationInputException($"statistics point '{pointId}' has {stats.Channels} channels, the down projection of block {blockIndex} reads {ffn.Down.InFeatures}: the statistics are of another model");
            if (ffn.DownInput.ElementType is { } t && !t.IsFloatingPoint()) { RefuseAll($"the down-projection input is {t.OnnxName()}"); continue; }
            var massiveTokens = mas.SelectMany(m => m.Tokens.Select(t => (t.Window, t.Position)).Concat(m.Hits.Select(h => (h.Token.Window, h.Token.Position))))
                .ToHashSet();
            massiveTokens.Add((mas[0].Birth.Token.Window, mas[0].Birth.Token.Position));
            var neuronIds = mas.SelectMany(m => m.Birth.Terms.Count > 0 ? m.Birth.Terms.Select(t => t.Neuron) : [m.Birth.DownInputArgMax!.Value]).Distinct().Order();
            var neurons = new List<ClippedNeuron>();
            foreach (int n in neuronIds)
            {
                var (bound, source) = ClipBound.OtherTokens(stats, n, massiveTokens);
                neurons.Add(new ClippedNeuron(n, stats.ChannelAbsMax(n), bound, source, bound * settings.BoundMultiple));
            }
            sites.Add(new ClipSite(blockIndex, pointId, ffn, mas.Select(m => m.Channel).Order().ToArray(), neurons));
        }
        return new ClipMaPlan(sites, refusals);
    }
}
