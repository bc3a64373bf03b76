using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Quantization.Int4.Awq;

/// <summary>What AWQ searched and folded.</summary>
public sealed record AwqReport(IReadOnlyList<AwqSiteResult> Sites, IReadOnlyList<FoldSiteOutcome> Folds, IReadOnlyList<string> Skipped)
{
    /// <summary>One line per site for the user: the alpha chosen and its int4 output error against round-to-nearest's.</summary>
    public IReadOnlyList<string> Lines() =>
        Sites.Select(s => string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{s.Site}: alpha {s.Alpha:G3}, int4 output error {s.Error:G4} (RTN {s.RtnError:G4}), {s.Tokens} tokens, {s.Elapsed.TotalMilliseconds:F0} ms"))
            .Concat(Skipped.Select(s => $"{s} (skipped)")).ToList();
}

/// <summary><c>int4-awq</c>: activation-aware int4. The linears' inputs at every foldable site (norm -> q/k/v, norm -> gate/up or
/// fc1, v -> o, up -> down) are captured on the calibration windows (<see cref="ActivationCapture"/>, ONNX Runtime, nothing
/// written), AWQ's scale is searched per site (<see cref="AwqScaleSearch"/>, by the int4 round-to-nearest error of the very
/// settings that follow), folded exactly (<see cref="AwqFoldPass"/>), and the model is then quantized
/// (<see cref="Int4Quantizer"/>). A site whose fold would not be exact is skipped (reported), never folded through a Mul.</summary>
public static class AwqQuantizer
{
    /// <summary>Searches and folds the scales into <paramref name="model"/> (in place); quantizes nothing.</summary>
    public static AwqReport Fold(Model model, IReadOnlyList<int[]> windows, Int4Settings int4, AwqSettings? settings = null,
        SessionSettings? session = null, IEnumerable<FoldSiteKind>? kinds = null, string? display = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(windows);
        ArgumentNullException.ThrowIfNull(int4);
        display ??= model.SourcePath ?? model.Graph.Name;
        var structure = Recognize(model, display);
        var wanted = (kinds ?? FoldSiteKinds.All).ToHashSet();
        var all = FoldSites.Discover(structure).Where(s => wanted.Contains(s.Kind)).ToList();
        try { FoldSites.RefuseQuantized(all); }
        catch (FoldRefusedException ex) { throw new Int4QuantizationException($"{display}: {ex.Message}", ex); }
        var skipped = all.Where(s => !s.Exact).Select(s => $"{s.Id}: {s.Unsupported ?? s.InexactReason}").ToList();
        var sites = all.Where(s => s.Exact).ToList();
        if (sites.Count == 0) return new AwqReport([], [], skipped);
        IReadOnlyList<CapturedActivation> captured;
        try
        {
            captured = ActivationCapture.Capture(model, sites.Select(s => TensorRef.Of(s.Tensor)).ToList(), windows,
                new ActivationCaptureOptions { Session = session, TokenInput = structure.Inputs.InputIds?.Name });
        }
        catch (Calibration.CalibrationException ex) { throw new Int4QuantizationException($"{display}: {ex.Message}", ex); }
        var results = new List<AwqSiteResult>();
        for (int i = 0; i < sites.Count; i++)
        {
            var site = sites[i];
            var linears = site.Consumers.Select(c => new SiteLinear(c.Weight.Name, c.Weight.ConstValue!, c.Layout)).ToList();
            results.Add(AwqScaleSearch.Search(site.Id, captured[i], linears, int4.BlockSize, int4.Symmetric, settings, site.Groups));
        }
        // The capture recognized nothing new, but the structure must be that of the model as it is now (a Skip* output may
        // have been materialized).
        structure = Recognize(model, display);
        var pass = new AwqFoldPass(structure, results.ToDictionary(r => r.Site, r => r.Scales), wanted, InexactPolicy.Skip);
        model.Apply(pass);
        return new AwqReport(results, pass.Outcomes, skipped);
    }

    /// <summary>AWQ fold, then int4 quantization with <paramref name="int4"/>.</summary>
    public static (AwqReport Awq, Int4Report Int4) Quantize(Model model, IReadOnlyList<int[]> windows, Int4Settings int4, AwqSettings? settings = null,
        SessionSettings? session = null, string? display = null)
    {
        var awq = Fold(model, windows, int4, settings, session, display: display);
        var report = Int4Quantizer.Quantize(model, int4, Recognize(model, display ?? model.SourcePath ?? model.Graph.Name), display);
        return (awq, report);
    }

    private static ModelStructure Recognize(Model model, string display)
    {
        var recognition = StructureRecognizer.Recognize(model);
        return recognition.Structure ?? throw new Int4QuantizationException($"{display}: no transformer structure recognized ({recognition.Message})");
    }
}
