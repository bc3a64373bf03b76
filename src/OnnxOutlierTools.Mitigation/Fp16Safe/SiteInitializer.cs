using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary>Replaces an initializer's data for one site only: when other nodes read the initializer too (an exporter
/// deduplicated equal tensors, a tied weight), or a role of <see cref="ModelStructure.SharedInitializers"/> lists it, or
/// it is a graph input or output, the site's nodes are pointed at a new copy first, so the edit changes nothing else.</summary>
internal static class SiteInitializer
{
    /// <summary>Sets <paramref name="tensor"/> as the data the <paramref name="siteNodes"/> read from
    /// <paramref name="initializer"/>; returns the initializer now holding it (the original or the copy).</summary>
    public static Value Replace(Model model, ModelStructure structure, Value initializer, IReadOnlyCollection<Node> siteNodes, Tensor tensor, NodeOrigin origin)
    {
        if (!initializer.IsInitializer) throw new InvalidOperationException($"'{initializer.Name}' is not an initializer");
        bool sharedRole = structure.SharedInitializers.Any(s => s.Initializer == initializer);
        bool readElsewhere = initializer.Uses.Any(u => u.IsGraphOutput || u.Node is null || !siteNodes.Contains(u.Node));
        if (!sharedRole && !readElsewhere && !initializer.IsGraphInput)
        {
            initializer.Graph.SetInitializerData(initializer, tensor);
            return initializer;
        }
        var copy = model.Edit(initializer.Graph, origin).Initializer(initializer.Name + "_" + origin.Pass.Replace('-', '_'), tensor);
        foreach (var use in initializer.Uses.Where(u => u.Node is not null && siteNodes.Contains(u.Node)).ToArray())
            use.Node!.ReplaceInput(use.Index, copy);
        return copy;
    }
}
