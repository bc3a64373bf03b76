using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Analysis;

/// <summary>What every analysis reads: the statistics in manifest (graph) order, the structure (null: weight-based
/// analyses are skipped), the settings, and the notes the analyses leave.</summary>
internal sealed class AnalysisContext
{
    public AnalysisContext(CalibrationStatistics statistics, ModelStructure? structure, AnalysisSettings settings)
    {
        Statistics = statistics;
        Structure = structure;
        Settings = settings;
        Points = statistics.Manifest.Points.Where(p => statistics.Points.ContainsKey(p.Id)).ToArray();
        _order = Points.Select((p, i) => (p.Id, i)).ToDictionary(t => t.Id, t => t.i, StringComparer.Ordinal);
        _byTensor = Points.GroupBy(p => p.Tensor, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
    }

    private readonly Dictionary<string, int> _order;
    private readonly Dictionary<string, ProbePoint> _byTensor;

    public CalibrationStatistics Statistics { get; }
    public ModelStructure? Structure { get; }
    public AnalysisSettings Settings { get; }
    /// <summary>The probed points that have statistics, in manifest (graph) order.</summary>
    public IReadOnlyList<ProbePoint> Points { get; }
    public List<AnalysisNote> Notes { get; } = [];
    public IReadOnlyDictionary<int, string> TokenTexts => Statistics.TokenTexts;

    public PointStatistics Stats(ProbePoint point) => Statistics.Points[point.Id];

    public int OrderOf(ProbePoint point) => _order[point.Id];

    public static PointRef Ref(ProbePoint point) => new(point.Id, point.Kind, point.Block);

    public TokenInfo Token(TokenRef token) => TokenInfo.Of(token, Statistics.TokenTexts);

    /// <summary>The point probing the value named <paramref name="tensor"/>, or else the point of that kind in that block.</summary>
    public ProbePoint? PointFor(string tensor, ProbeKind kind, int? block) =>
        _byTensor.GetValueOrDefault(tensor) ?? PointFor(kind, block);

    public ProbePoint? PointFor(ProbeKind kind, int? block) => Points.FirstOrDefault(p => p.Is(kind, block));

    /// <summary>Whether the point plays one of <paramref name="kinds"/> (itself or as an alias: a post-norm block's output is
    /// also the next block's attention input).</summary>
    public static bool IsAny(ProbePoint point, IReadOnlyList<ProbeKind> kinds) => kinds.Any(k => point.Is(k));

    public ProbePoint? PointForTensor(string tensor) => _byTensor.GetValueOrDefault(tensor);

    public BlockRole? Block(int index) => Structure?.Blocks.FirstOrDefault(b => b.Index == index);

    private readonly Dictionary<string, WeightMatrix?> _downWeights = new(StringComparer.Ordinal);

    /// <summary>A down projection's weight, read once however many massive channels it writes (null: unreadable, with a
    /// note the first time).</summary>
    public WeightMatrix? DownWeight(int block, LinearRole down, out string? problem)
    {
        problem = null;
        if (_downWeights.TryGetValue(down.Weight.Name, out var cached))
        {
            if (cached is null) WeightMatrix.TryRead(down, out problem);
            return cached;
        }
        var weight = WeightMatrix.TryRead(down, out problem);
        if (weight is null) Note(down.Quantized ? NoteKind.QuantizedWeight : NoteKind.UnreadableWeight, $"block {block} ffn.down", problem!);
        _downWeights[down.Weight.Name] = weight;
        return weight;
    }

    public void Note(NoteKind kind, string subject, string message) => Notes.Add(new(kind, subject, message));
}
