using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>One site's automatic alpha: what the search chose and how well it did.</summary>
public sealed record SiteAlpha(string SiteId, double Alpha, double Error, double UnsmoothedError, int Tokens, TimeSpan Elapsed);

/// <summary>SmoothQuant <c>auto</c>: for every foldable site of the kinds asked for, the linears' input captured on the
/// calibration windows from the model as it is now (<see cref="ActivationCapture"/>) and alpha chosen by the int8
/// fake-quantization error of the site's outputs (<see cref="SmoothAlphaSearch"/>), with the site's tie groups.</summary>
public static class SiteAlphas
{
    public static IReadOnlyList<SiteAlpha> Search(string modelPath, IEnumerable<FoldSiteKind> kinds, IReadOnlyList<int[]> windows,
        ActivationScheme scheme = ActivationScheme.PerTokenDynamic, Runtime.SessionSettings? session = null)
    {
        using var model = ModelReader.Load(modelPath);
        var recognition = StructureRecognizer.Recognize(model);
        var structure = recognition.Structure ?? throw new MitigationInputException($"{modelPath}: not recognized: {recognition.Message}");
        var wanted = kinds.ToHashSet();
        var sites = FoldSites.Discover(structure).Where(s => wanted.Contains(s.Kind) && s.Unsupported is null).ToList();
        if (sites.Count == 0) return [];
        var captured = ActivationCapture.Capture(model, sites.Select(s => TensorRef.Of(s.Tensor)).ToList(), windows,
            new ActivationCaptureOptions { Session = session, TokenInput = structure.Inputs.InputIds?.Name });
        var result = new List<SiteAlpha>();
        for (int i = 0; i < sites.Count; i++)
        {
            var site = sites[i];
            var linears = site.Consumers.Select(c => new SiteLinear(c.Weight.Name, c.Weight.ConstValue!, c.Layout)).ToList();
            var ties = site.Groups is null ? null
                : new ChannelTies(site.Channels, Enumerable.Range(0, site.Channels).GroupBy(c => site.Groups[c]).Select(g => (IReadOnlyList<int>)g.ToList()));
            var found = SmoothAlphaSearch.Search(captured[i], linears, new SmoothAlphaSearchOptions { Scheme = scheme, Ties = ties });
            result.Add(new SiteAlpha(site.Id, found.Alpha, found.Error, found.UnsmoothedError, found.Tokens, found.Elapsed));
        }
        return result;
    }
}
